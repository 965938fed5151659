package session

import "strings"

// Normalize replaces the literals of a SQL text (numbers, quoted and dollar-quoted strings)
// with '?', keeping everything else byte for byte, so that statements that differ only in
// their constants share one decision-cache key. It follows PostgreSQL's lexical rules for
// comments (nested), quoted identifiers, E” strings and $tag$ quoting. ok is false when the
// text cannot be lexed with confidence (an unterminated quote or comment): such a statement
// is never served from the cache.
func Normalize(sql string) (string, bool) {
	var b strings.Builder
	b.Grow(len(sql))
	n := len(sql)
	for i := 0; i < n; {
		c := sql[i]
		switch {
		case c == '-' && i+1 < n && sql[i+1] == '-':
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				j = n - i
			}
			b.WriteString(sql[i : i+j])
			i += j
		case c == '/' && i+1 < n && sql[i+1] == '*':
			depth, j := 1, i+2
			for j < n && depth > 0 {
				switch {
				case sql[j] == '/' && j+1 < n && sql[j+1] == '*':
					depth++
					j += 2
				case sql[j] == '*' && j+1 < n && sql[j+1] == '/':
					depth--
					j += 2
				default:
					j++
				}
			}
			if depth > 0 {
				return "", false
			}
			b.WriteString(sql[i:j])
			i = j
		case c == '"':
			j := i + 1
			for {
				k := strings.IndexByte(sql[j:], '"')
				if k < 0 {
					return "", false
				}
				j += k + 1
				if j < n && sql[j] == '"' {
					j++
					continue
				}
				break
			}
			b.WriteString(sql[i:j])
			i = j
		case c == '\'':
			escapes := i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e') && (i < 2 || !identChar(sql[i-2]))
			j, ok := endOfString(sql, i+1, escapes)
			if !ok {
				return "", false
			}
			b.WriteByte('?')
			i = j
		case c == '$':
			// $1 parameters stay; $tag$ ... $tag$ is a string.
			if i+1 < n && sql[i+1] >= '0' && sql[i+1] <= '9' {
				j := i + 1
				for j < n && sql[j] >= '0' && sql[j] <= '9' {
					j++
				}
				b.WriteString(sql[i:j])
				i = j
				continue
			}
			j := i + 1
			for j < n && identChar(sql[j]) && sql[j] != '$' {
				j++
			}
			if j >= n || sql[j] != '$' || (i > 0 && identChar(sql[i-1])) {
				b.WriteByte(c)
				i++
				continue
			}
			tag := sql[i : j+1]
			k := strings.Index(sql[j+1:], tag)
			if k < 0 {
				return "", false
			}
			b.WriteByte('?')
			i = j + 1 + k + len(tag)
		case (c >= '0' && c <= '9' || c == '.' && i+1 < n && sql[i+1] >= '0' && sql[i+1] <= '9') && (i == 0 || !identChar(sql[i-1])):
			j := i
			for j < n && (identChar(sql[j]) || sql[j] == '.' || (sql[j] == '+' || sql[j] == '-') && (sql[j-1] == 'e' || sql[j-1] == 'E')) {
				j++
			}
			b.WriteByte('?')
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), true
}

// endOfString returns the index after the closing quote of a string starting at i.
func endOfString(sql string, i int, backslashEscapes bool) (int, bool) {
	for i < len(sql) {
		switch sql[i] {
		case '\\':
			if backslashEscapes {
				i += 2
				continue
			}
		case '\'':
			if i+1 < len(sql) && sql[i+1] == '\'' {
				i += 2
				continue
			}
			return i + 1, true
		}
		i++
	}
	return 0, false
}

func identChar(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

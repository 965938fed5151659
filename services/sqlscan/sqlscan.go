// Package sqlscan reads SQL text as PostgreSQL's scanner does, without parsing it: the
// proxy's decision-cache key (Normalize) and the bound on how deeply a statement may nest
// before it is handed to the parser (Depth). Its lexical rules are held to PostgreSQL's
// own scanner by a differential test and a fuzz target.
package sqlscan

import "strings"

// Kind is what a lexed range is.
type Kind uint8

const (
	// Other is a run of anything else: keywords, identifiers, operators, punctuation.
	Other Kind = iota
	// Comment is a -- or /* */ comment (nested, as PostgreSQL nests them).
	Comment
	// QuotedIdent is a "quoted identifier".
	QuotedIdent
	// Literal is a number, a quoted string (E”, B”, X”, U&” without their prefix) or a
	// dollar-quoted string.
	Literal
	// Param is a $1 parameter.
	Param
)

// Lex walks sql as PostgreSQL's scanner does, with standard_conforming_strings on, and
// calls tok for each range in order (Other for the runs between the others). It returns
// false when the text cannot be lexed with confidence: an unterminated quote or comment,
// or a number run into letters (PostgreSQL 15+ calls it trailing junk, older servers a
// number then a word).
func Lex(sql string, tok func(k Kind, start, end int)) bool {
	n := len(sql)
	run := 0 // start of the current Other run
	emit := func(k Kind, start, end int) {
		if run < start {
			tok(Other, run, start)
		}
		tok(k, start, end)
		run = end
	}
	for i := 0; i < n; {
		c := sql[i]
		switch {
		case c == '-' && i+1 < n && sql[i+1] == '-':
			// A comment runs to the end of the line: \n or \r, as PostgreSQL's scanner
			// says (ending it at \n alone read `--\r'...'` as comment where PostgreSQL
			// reads a string, and the cache key hid code).
			j := strings.IndexAny(sql[i:], "\n\r")
			if j < 0 {
				j = n - i
			}
			emit(Comment, i, i+j)
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
				return false
			}
			emit(Comment, i, j)
			i = j
		case c == '"':
			j := i + 1
			for {
				k := strings.IndexByte(sql[j:], '"')
				if k < 0 {
					return false
				}
				j += k + 1
				if j < n && sql[j] == '"' {
					j++
					continue
				}
				break
			}
			emit(QuotedIdent, i, j)
			i = j
		case c == '\'':
			escapes := i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e') && (i < 2 || !identChar(sql[i-2]))
			j, ok := endOfString(sql, i+1, escapes)
			for ok {
				// A string followed by whitespace holding a newline and another quote goes
				// on there, in the same mode: E'a'<newline>'\'...' is one string whose
				// \' escapes the quote, so the second part must be read with escapes too.
				k, cont := continuation(sql, j)
				if !cont {
					break
				}
				if k < 0 {
					return false // a comment in the gap: not read with confidence
				}
				j, ok = endOfString(sql, k+1, escapes)
			}
			if !ok {
				return false
			}
			emit(Literal, i, j)
			i = j
		case c == '$':
			// $1 parameters; $tag$ ... $tag$ is a string.
			if i+1 < n && sql[i+1] >= '0' && sql[i+1] <= '9' {
				j := i + 1
				for j < n && sql[j] >= '0' && sql[j] <= '9' {
					j++
				}
				emit(Param, i, j)
				i = j
				continue
			}
			j := i + 1
			for j < n && identChar(sql[j]) && sql[j] != '$' {
				j++
			}
			if j >= n || sql[j] != '$' || (i > 0 && identChar(sql[i-1])) {
				i++
				continue
			}
			tag := sql[i : j+1]
			k := strings.Index(sql[j+1:], tag)
			if k < 0 {
				return false
			}
			emit(Literal, i, j+1+k+len(tag))
			i = j + 1 + k + len(tag)
		case (c >= '0' && c <= '9' || c == '.' && i+1 < n && sql[i+1] >= '0' && sql[i+1] <= '9') && (i == 0 || !identChar(sql[i-1])):
			j, ok := endOfNumber(sql, i)
			if !ok {
				return false
			}
			emit(Literal, i, j)
			i = j
		default:
			i++
		}
	}
	if run < n {
		tok(Other, run, n)
	}
	return true
}

// Normalize replaces the literals of a SQL text (numbers, quoted and dollar-quoted strings)
// with '?', keeping everything else byte for byte, so that statements that differ only in
// their constants share one decision-cache key. ok is false when the text cannot be lexed
// with confidence (Lex): such a statement is never served from the cache.
func Normalize(sql string) (string, bool) {
	var b strings.Builder
	b.Grow(len(sql))
	ok := Lex(sql, func(k Kind, start, end int) {
		if k == Literal {
			b.WriteByte('?')
		} else {
			b.WriteString(sql[start:end])
		}
	})
	if !ok {
		return "", false
	}
	return b.String(), true
}

// endOfNumber returns the index after the number starting at i, read as PostgreSQL's
// scanner reads it: 0x, 0o, 0b integers; decimal integers and numerics with an optional
// exponent; underscores between digits. A number run into letters or digits that are not
// its own (1union, 0x1g, 1e5x) is "trailing junk" to PostgreSQL 15+ and a number then a
// word to older servers: not ok.
func endOfNumber(sql string, i int) (int, bool) {
	n := len(sql)
	digits := func(j int, ok func(byte) bool) int {
		for j < n && (ok(sql[j]) || sql[j] == '_' && j+1 < n && ok(sql[j+1]) && j > 0 && ok(sql[j-1])) {
			j++
		}
		return j
	}
	dec := func(c byte) bool { return c >= '0' && c <= '9' }
	j := i
	if sql[i] == '0' && i+2 < n {
		var ok func(byte) bool
		switch sql[i+1] {
		case 'x', 'X':
			ok = func(c byte) bool { return dec(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
		case 'o', 'O':
			ok = func(c byte) bool { return c >= '0' && c <= '7' }
		case 'b', 'B':
			ok = func(c byte) bool { return c == '0' || c == '1' }
		}
		if ok != nil {
			k := i + 2
			if k < n && sql[k] == '_' {
				k++
			}
			if k < n && ok(sql[k]) {
				j = digits(k, ok)
				return j, j >= n || !identChar(sql[j]) && sql[j] != '.'
			}
			return 0, false
		}
	}
	j = digits(j, dec)
	if j < n && sql[j] == '.' && !(j+1 < n && sql[j+1] == '.') {
		j = digits(j+1, dec)
	}
	if j < n && (sql[j] == 'e' || sql[j] == 'E') {
		k := j + 1
		if k < n && (sql[k] == '+' || sql[k] == '-') {
			k++
		}
		if k >= n || !dec(sql[k]) {
			return 0, false
		}
		j = digits(k, dec)
	}
	return j, j >= n || !identChar(sql[j]) && sql[j] != '.'
}

// continuation looks after a string that ends at j for another quote that continues it:
// only whitespace between, a newline among it (PostgreSQL's quotecontinue). It returns
// the quote's index and true; -1 and true when a -- comment stands between the string and
// a quote after a newline, or a /* comment follows it (PostgreSQL's rule reads some of
// those as a continuation: the text is not lexed with confidence); false when the string
// does not go on.
func continuation(sql string, j int) (int, bool) {
	newline, comment := false, false
	for k := j; k < len(sql); {
		switch c := sql[k]; {
		case c == '\n' || c == '\r':
			newline = true
			k++
		case c == ' ' || c == '\t' || c == '\f' || c == '\v':
			k++
		case c == '-' && k+1 < len(sql) && sql[k+1] == '-':
			comment = true
			for k < len(sql) && sql[k] != '\n' && sql[k] != '\r' {
				k++
			}
		case c == '/' && k+1 < len(sql) && sql[k+1] == '*':
			return -1, true // (comments nest) not read with confidence
		case c == '\'' && newline:
			if comment {
				return -1, true
			}
			return k, true
		default:
			return 0, false
		}
	}
	return 0, false
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

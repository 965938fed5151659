package http

import (
	"errors"
	"net/url"
	"strings"
	"unicode/utf8"
)

// One meaning: the gateway decides on a path and forwards exactly that path, so the policy
// and the service cannot read two different ones. The client's path is split on its raw
// slashes, each segment percent-decoded once, dot segments resolved and empty ones dropped,
// and the result encoded again in one canonical way — which is what is decided and what is
// forwarded. What has no single meaning across servers is refused rather than guessed:
// an encoded slash or backslash inside a segment (some servers decode it into a separator,
// some do not), a decoded '%' (a server that decodes twice would read %252e as '.'), a ';'
// (servlet containers cut path parameters off a segment: /admin;x is /admin to them), NUL
// and control characters, invalid UTF-8, '..' above the root, and a fragment.

// PathError is why a path was refused.
type PathError struct{ Msg string }

func (e *PathError) Error() string { return e.Msg }

// NormalizePath returns the decoded and the encoded form of the client's raw path
// (RequestURI's path part, before any decoding).
func NormalizePath(raw string) (decoded, encoded string, err error) {
	if raw == "" || raw[0] != '/' {
		return "", "", &PathError{"the path must start with /"}
	}
	if strings.ContainsAny(raw, "#") {
		return "", "", &PathError{"a fragment (#) is not part of a request path"}
	}
	segs := strings.Split(raw[1:], "/")
	trailing := strings.HasSuffix(raw, "/") && len(raw) > 1
	out := make([]string, 0, len(segs))
	for _, s := range segs {
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", "", &PathError{"malformed percent-encoding in the path"}
		}
		switch {
		case strings.ContainsAny(d, "/\\"):
			return "", "", &PathError{"an encoded slash or backslash in a path segment is refused (servers disagree on what it means)"}
		case strings.Contains(d, "%"):
			return "", "", &PathError{"a percent sign in a decoded path segment (double encoding) is refused"}
		case strings.Contains(d, ";"):
			return "", "", &PathError{"a ';' in the path is refused (some servers cut path parameters off a segment)"}
		case !utf8.ValidString(d):
			return "", "", &PathError{"the path is not valid UTF-8"}
		case hasControl(d):
			return "", "", &PathError{"control characters in the path are refused"}
		}
		switch d {
		case "", ".":
			continue
		case "..":
			if len(out) == 0 {
				return "", "", &PathError{"the path climbs above the root (..)"}
			}
			out = out[:len(out)-1]
			continue
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return "/", "/", nil
	}
	var db, eb strings.Builder
	for _, s := range out {
		db.WriteByte('/')
		db.WriteString(s)
		eb.WriteByte('/')
		eb.WriteString(escapeSegment(s))
	}
	if trailing {
		db.WriteByte('/')
		eb.WriteByte('/')
	}
	return db.String(), eb.String(), nil
}

// encodePath encodes a normalised (decoded) path canonically, segment by segment.
func encodePath(decoded string) string {
	segs := strings.Split(decoded, "/")
	for i, s := range segs {
		segs[i] = escapeSegment(s)
	}
	return strings.Join(segs, "/")
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// escapeSegment encodes a decoded segment: unreserved characters and the sub-delimiters a
// segment may hold (RFC 3986 pchar) stay, everything else is %XX.
func escapeSegment(s string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if pchar(c) {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(s)+8), s[:i]...)
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	if b == nil {
		return s
	}
	return string(b)
}

func pchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,=:@", c) >= 0
}

// NormalizeQuery parses the client's raw query and returns the parameters and their
// canonical encoding, which is what is forwarded. A query that does not parse (a bad
// escape, a ';' separator some servers split on and others do not) is refused.
func NormalizeQuery(raw string) (url.Values, string, error) {
	if raw == "" {
		return nil, "", nil
	}
	if strings.Contains(raw, ";") {
		return nil, "", errors.New("a ';' in the query is refused (servers disagree on whether it separates parameters)")
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, "", errors.New("malformed query: " + err.Error())
	}
	for k, vs := range v {
		if !utf8.ValidString(k) || hasControl(k) {
			return nil, "", errors.New("malformed query: a parameter name is not valid text")
		}
		for _, s := range vs {
			if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
				return nil, "", errors.New("malformed query: a value is not valid UTF-8 or holds NUL")
			}
		}
	}
	return v, encodeQuery(raw, v), nil
}

// encodeQuery encodes v keeping the client's order of parameters (some services care), each
// name and value escaped canonically.
func encodeQuery(raw string, v url.Values) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, _, _ := strings.Cut(part, "=")
		name, err := url.QueryUnescape(k)
		if err != nil || seen[name] {
			continue
		}
		seen[name] = true
		for _, val := range v[name] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(name))
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(val))
		}
	}
	return b.String()
}

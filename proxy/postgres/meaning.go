package postgres

import (
	"fmt"
	"net"
	"strings"

	"github.com/gatehouse/gatehouse/schemas"
)

// One meaning: what the policy analyses must be exactly what the backend executes. The
// policy reads every statement as UTF-8 with standard_conforming_strings on, so the proxy
// pins both for the session: a client that asks for something else (startup parameter,
// options=-c ..., PGCLIENTENCODING) is refused at startup with the setting named; a
// statement that changes either is refused by the policy; a statement that is not valid
// UTF-8 is refused as PostgreSQL would; a statement that runs code the policy cannot see
// into (a DO block, a function that is not built in) is a barrier: nothing is sent after
// it until the backend has answered it; and if the backend ever reports (ParameterStatus)
// that either setting changed, the session ends at once.
//
// In a client encoding such as SJIS, BIG5, GBK, GB18030, UHC or JOHAB, the second byte of
// a character can be a backslash or a quote: a gateway reading UTF-8 and a backend reading SJIS would
// split `select E'<0x95>\' ; ... -- '` differently. UTF-8 never puts an ASCII byte inside
// a character, so with it (and standard strings) both read one statement one way.

// pinnedSettings are the settings the proxy pins for every session, with their values
// as the backend reports them.
var pinnedSettings = map[string]string{"client_encoding": "UTF8", "standard_conforming_strings": "on"}

// acceptedEncodings are the client_encoding values a client may ask for: UTF-8 under its
// names, and SQL_ASCII (no conversion), which with UTF-8 pinned reads the same bytes.
var acceptedEncodings = map[string]bool{"utf8": true, "utf-8": true, "unicode": true, "sql_ascii": true}

// pinnedParams refuses startup parameters (and options) that ask for another client
// encoding or for standard_conforming_strings off.
func pinnedParams(params map[string]string) error {
	check := func(name, value, where string) error {
		name = strings.ReplaceAll(strings.ToLower(name), "-", "_")
		value = strings.Trim(strings.TrimSpace(value), `'"`)
		switch name {
		case "client_encoding":
			if !acceptedEncodings[strings.ToLower(value)] {
				return &startupError{"22023", "encoding", fmt.Sprintf(
					"client_encoding %q (%s) is not supported through Gatehouse: the gateway reads statements as UTF-8, and in an encoding like SJIS, BIG5 or GBK a character can hide a quote or a backslash; connect with client_encoding=UTF8 (PGCLIENTENCODING=UTF8)", value, where)}
			}
		case "standard_conforming_strings":
			if v := strings.ToLower(value); v != "on" && v != "true" && v != "yes" && v != "1" {
				return &startupError{"22023", "encoding", fmt.Sprintf(
					"standard_conforming_strings %q (%s) is not supported through Gatehouse: the gateway reads string literals with it on", value, where)}
			}
		}
		return nil
	}
	for k, v := range params {
		if err := check(k, v, "startup parameter"); err != nil {
			return err
		}
	}
	for _, o := range splitOptions(params["options"]) {
		var kv string
		switch {
		case strings.HasPrefix(o.flag, "--"):
			kv = o.flag[2:]
		case o.flag == "-c":
			kv = o.value
		case strings.HasPrefix(o.flag, "-c"):
			kv = o.flag[2:]
		default:
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if err := check(k, v, "options parameter"); err != nil {
			return err
		}
	}
	return nil
}

type option struct{ flag, value string }

// splitOptions splits the options startup parameter as the backend does: words separated
// by spaces, a backslash escaping the next character; "-c" takes the next word.
func splitOptions(s string) []option {
	var words []string
	var b strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, b.String())
	}
	var out []option
	for i := 0; i < len(words); i++ {
		o := option{flag: words[i]}
		if words[i] == "-c" && i+1 < len(words) {
			o.value = words[i+1]
			i++
		}
		out = append(out, o)
	}
	return out
}

// invalidUTF8 is what a statement that is not valid UTF-8 is told (PostgreSQL's own words).
const invalidUTF8 = "invalid byte sequence for encoding \"UTF8\": the gateway reads statements as UTF-8 (client_encoding is pinned to UTF8)"

// waitCode holds the client loop while a statement that runs unseen code is in flight:
// the next statement is read by the backend only after its answer (and any
// ParameterStatus before it) has been seen.
func (c *conn) waitCode() error {
	if c.tx.codeInFlight.Load() == 0 {
		return nil
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	c.queue.mu.Lock()
	defer c.queue.mu.Unlock()
	for c.tx.codeInFlight.Load() > 0 && !c.queue.closed {
		c.queue.cond.Wait()
	}
	if c.queue.closed {
		return net.ErrClosed
	}
	return nil
}

// settingChanged ends the session when the backend reports that a pinned setting changed
// (a function, a DO block, anything): what the gateway decided and what the backend
// executes could no longer be the same. Nothing more is relayed.
func (c *conn) settingChanged(name, value string) {
	reason := fmt.Sprintf("the backend reported %s %q; the gateway pins %s", name, value, pinnedSettings[name])
	c.srv.log.Warn("a pinned setting changed; ending the session", "session", c.sess.ID, "setting", name, "value", value)
	c.terminate(&schemas.SessionTerminated{Cause: "settings_changed", Reason: reason},
		"terminating connection: "+reason+"; statements could be read otherwise than the gateway decided them (Gatehouse ends the session, fail closed)")
	c.closeBoth()
}

// parameterStatus reads a ParameterStatus body: name and value.
func parameterStatus(body []byte) (string, string, bool) {
	name, rest, err := cstring(body)
	if err != nil {
		return "", "", false
	}
	value, _, err := cstring(rest)
	if err != nil {
		return "", "", false
	}
	return name, value, true
}

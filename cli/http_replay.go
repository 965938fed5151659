package cli

// The replay of an HTTP or Kubernetes session: the session in a few lines, each request
// (method and path, or what the Kubernetes API server read of it: verb, resource,
// namespace, name) with its decision and approval, the response's status, excerpts of the
// masked bodies as recorded, WebSocket messages and how the request ended; then each
// `kubectl exec` terminal played as an SSH channel's is (or written as asciicast).

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/query"
)

// bodyExcerpt is how much of a recorded body the replay prints (--json has all of it).
const bodyExcerpt = 200

// replayHTTP prints an HTTP or Kubernetes session and plays its exec terminals, or writes
// one as asciicast. --channel picks an exec by its request number.
func replayHTTP(ctx context.Context, stdout, stderr io.Writer, r *query.Replay, f *sshReplayFlags, sleep sleeper) error {
	s := query.HTTPSessionOf(r.Events)
	var pick *query.HTTPRequest
	if *f.channel != "" {
		n, err := strconv.ParseUint(*f.channel, 10, 64)
		if err != nil {
			return usageError{fmt.Sprintf("--channel: %q is not a request number", *f.channel)}
		}
		for _, q := range s.Requests {
			if q.Request.QueryID == n {
				pick = q
			}
		}
		if pick == nil {
			return fmt.Errorf("session %s has no request %d; requests with terminal output: %s", r.SessionID, n, execList(s))
		}
	}
	if *f.asciicast != "" {
		if pick == nil {
			for _, q := range s.Requests {
				if q.HasOutput() {
					pick = q
					break
				}
			}
		}
		if pick == nil || !pick.HasOutput() {
			return fmt.Errorf("session %s has no terminal output to write (requests with terminal output: %s)", r.SessionID, execList(s))
		}
		if err := writeAsciicast(stdout, *f.asciicast, pick, query.KubeAsciicastTitle(s, pick), *f.input); err != nil {
			return err
		}
		where := *f.asciicast
		if where == "-" {
			where = "stdout"
		}
		t := pick.Terminal()
		fmt.Fprintf(stderr, "wrote %s, %d frames over %s, to %s; requests with terminal output: %s (--channel N)\n",
			pick.Describe(), len(t.Frames), t.Duration().Round(time.Millisecond), where, execList(s))
		return nil
	}
	printHTTPSession(stdout, s, r)
	if *f.noPlay {
		return nil
	}
	p := &player{sleep: sleep, speed: *f.speed, noWait: *f.noWait, maxIdle: *f.maxIdle}
	for _, q := range s.Requests {
		if (pick != nil && q != pick) || !q.HasOutput() {
			continue
		}
		if stopped, err := p.playTerminal(ctx, stdout, stderr, q.Describe(), fmt.Sprintf("request %d", q.Request.QueryID), q.Terminal()); stopped || err != nil {
			return err
		}
	}
	return nil
}

// execList names the requests with terminal output (Kubernetes execs and attaches).
func execList(s *query.HTTPSession) string {
	var names []string
	for _, q := range s.Requests {
		if q.HasOutput() {
			names = append(names, q.Describe())
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// printHTTPSession prints the session and, per request, what was asked and what happened.
func printHTTPSession(w io.Writer, s *query.HTTPSession, r *query.Replay) {
	kind := "HTTP"
	if s.Protocol == "kubernetes" {
		kind = "Kubernetes"
	}
	fmt.Fprintf(w, "%s session %s\n", kind, r.SessionID)
	groups := ""
	if len(s.Identity.Groups) > 0 {
		groups = " (groups " + strings.Join(s.Identity.Groups, ",") + ")"
	}
	fmt.Fprintf(w, "  who:      %s%s\n", who(s.Identity), groups)
	if p := s.Start; p != nil {
		fmt.Fprintf(w, "  resource: %s\n", s.Resource)
		fmt.Fprintf(w, "  client:   %s, %s, tls=%v, audit %s\n", p.ClientAddr, orNone(p.ApplicationName), p.TLS, p.AuditMode)
		fmt.Fprintf(w, "  started:  %s\n", s.Started.Local().Format(time.DateTime))
	} else {
		fmt.Fprintf(w, "  resource: %s (the trail has no session.start)\n", s.Resource)
	}
	if t := s.Terminated; t != nil {
		fmt.Fprintf(w, "  ended by the gateway: %s %s %s\n", t.Cause, t.Revocation, t.Reason)
	}
	if e := s.End; e != nil {
		fmt.Fprintf(w, "  ended:    %s, %s, %d request(s) (%d denied, %d held for approval), %d bytes in, %d bytes out%s\n",
			s.Ended.Local().Format(time.DateTime), e.Reason, e.Statements, e.Denied, e.Held, e.BytesIn, e.BytesOut, errSuffix(e.Error))
	} else {
		fmt.Fprintf(w, "  ended:    not in the trail (open, or cut)\n")
	}
	for _, q := range s.Requests {
		printHTTPRequest(w, q)
	}
	if !r.ChainOK {
		fmt.Fprintf(w, "WARNING: hash chain broken: %s\n", r.ChainError)
	} else {
		fmt.Fprintf(w, "hash chain intact (%d events)\n", len(r.Events))
	}
}

// printHTTPRequest prints one request: the request line, its decision, then what came of
// it, indented.
func printHTTPRequest(w io.Writer, q *query.HTTPRequest) {
	p := &q.Request
	fmt.Fprintf(w, "%s  #%d request %d %s: %s\n", q.Time.Local().Format("15:04:05.000000"), q.Seq, p.QueryID, printable(httpRequestLine(q)), decisionLine(&q.Verdict))
	if p.RawPath != "" {
		fmt.Fprintf(w, "    sent as:  %s (normalised to the path above)\n", printable(p.RawPath))
	}
	if p.Body != "" || p.BodyBytes > 0 {
		fmt.Fprintf(w, "    body:     %d bytes%s%s\n", p.BodyBytes, truncatedNote(p.BodyTruncated), excerptSuffix(p.Body))
	}
	if x := q.Response; x != nil {
		fmt.Fprintf(w, "    response: %d (from the %s)\n", x.Status, x.From)
	}
	if len(q.Body) > 0 {
		masked := ""
		if q.BodyMasked > 0 {
			masked = fmt.Sprintf(", %d value(s) masked", q.BodyMasked)
		}
		fmt.Fprintf(w, "    response body: %d chunk(s) recorded%s%s\n", len(q.Body), masked, excerptSuffix(q.BodyText()))
	}
	if len(q.WS) > 0 {
		var in, out int
		for _, f := range q.WS {
			if f.From == "client" {
				in++
			} else {
				out++
			}
		}
		notes := ""
		if q.WSMasked > 0 {
			notes += fmt.Sprintf(", %d value(s) masked", q.WSMasked)
		}
		if q.WSDropped > 0 {
			notes += fmt.Sprintf(", %d byte(s) past the recording limit not recorded", q.WSDropped)
		}
		fmt.Fprintf(w, "    websocket: %d message(s) from the client, %d from the server%s\n", in, out, notes)
	}
	if len(q.Frames) > 0 {
		t := q.Terminal()
		var notes []string
		if t.Cols > 0 {
			notes = append(notes, fmt.Sprintf("%dx%d", t.Cols, t.Rows))
		}
		if q.IOMasked > 0 {
			notes = append(notes, fmt.Sprintf("%d value(s) masked", q.IOMasked))
		}
		if q.IODropped > 0 {
			notes = append(notes, fmt.Sprintf("%d byte(s) past the recording limit not recorded", q.IODropped))
		}
		if q.StdinSHA256 != "" {
			notes = append(notes, "stdin sha256 "+q.StdinSHA256)
		}
		extra := ""
		if len(notes) > 0 {
			extra = "; " + strings.Join(notes, ", ")
		}
		fmt.Fprintf(w, "    terminal: %d frame(s) over %s%s\n", len(t.Frames), t.Duration().Round(time.Millisecond), extra)
	}
	if d := q.Done; d != nil {
		code := ""
		if d.Code != 0 {
			code = fmt.Sprintf(" %d", d.Code)
		}
		masked := ""
		if d.Masked > 0 {
			masked = fmt.Sprintf(", %d value(s) masked", d.Masked)
		}
		fmt.Fprintf(w, "    done:     %s%s after %s, %d bytes out (%d recorded)%s%s\n", d.Status, code,
			(time.Duration(d.DurationUS) * time.Microsecond).Round(time.Millisecond), d.BytesOut, d.BytesRecorded, masked, errSuffix(printable(d.Error)))
		if d.Exit != "" {
			fmt.Fprintf(w, "    exit:     %s\n", printable(d.Exit))
		}
	}
}

// httpRequestLine is a request as people read it: `GET /orders/7 (route /orders/{id})`, or
// for Kubernetes `exec pods web-1 -n shop -c app "sh -c date" (POST /api/v1/...)`.
func httpRequestLine(q *query.HTTPRequest) string {
	p := &q.Request
	s := q.Text()
	if p.Route != "" && p.Kube == nil {
		s += " (route " + p.Route + ")"
	}
	if p.Websocket {
		s += " [websocket]"
	}
	return s
}

func truncatedNote(t bool) string {
	if t {
		return " (recorded in part)"
	}
	return ""
}

// excerptSuffix is `: <the first bodyExcerpt characters of s on one line>…`, or "" for an
// empty s. What is printed is what the trail holds (masked already), control characters
// escaped.
func excerptSuffix(s string) string {
	if s == "" {
		return ""
	}
	one := strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(one) <= bodyExcerpt {
		return ": " + printable(one)
	}
	r := []rune(one)
	return ": " + printable(string(r[:bodyExcerpt])) + "…"
}

// printable is s with its control characters (a terminal's escape sequences, carriage
// returns) written as Go escapes, so that what a client or service sent cannot drive the
// auditor's terminal; the bytes of an invalid UTF-8 sequence likewise.
func printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], string(utf8.RuneError)):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
)

func sessionsCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return usageError{"sessions needs a subcommand: list or replay ID"}
	}
	sub := args[0]
	fs := newFlags("sessions "+sub, stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	api := addAPIFlags(fs, "auditor", "in dev: gatehouse token --dev --sub auditor --groups auditors")
	var identity, resource *string
	var limit *int
	var filters []*[2]string
	var ssh sshReplayFlags
	if sub == "replay" {
		ssh = sshReplayFlags{
			speed:     fs.Float64("speed", 1, "SSH, kubectl exec: play terminal output this many times faster than it was recorded"),
			noWait:    fs.Bool("no-wait", false, "SSH, kubectl exec: print terminal output at once, without its pauses"),
			noPlay:    fs.Bool("no-play", false, "SSH, HTTP, Kubernetes: print the session, its requests and decisions, without the terminal output"),
			maxIdle:   fs.Duration("max-idle", 0, "SSH, kubectl exec: wait at most this long between two frames of terminal output (0: as recorded)"),
			channel:   fs.String("channel", "", "SSH: only channel `N`; Kubernetes: only the exec of request N (default: every one with terminal output; with --asciicast the first one)"),
			asciicast: fs.String("asciicast", "", "SSH, kubectl exec: write one channel's or exec's terminal to `FILE` as asciicast v2 (- for stdout) instead of printing the session"),
			input:     fs.Bool("input", false, "SSH, kubectl exec: with --asciicast, include what the client typed as input (i) events"),
		}
	}
	if sub == "list" {
		identity = fs.String("identity", "", "only sessions of this identity (its name, e.g. an email, or its token subject)")
		resource = fs.String("resource", "", "only sessions on this resource")
		limit = fs.Int("limit", 50, "at most this many sessions (a page; --before gets the next)")
		for _, f := range []struct{ name, help string }{
			{"group", "only identities in this group"}, {"since", "started at or after this RFC 3339 time"},
			{"until", "started at or before this RFC 3339 time"}, {"effect", "with a statement allowed, denied, held (for approval), approved or masked"},
			{"text", "with a statement, SSH command, SSH/SFTP path, or HTTP/Kubernetes request path, query or body containing this text"}, {"fingerprint", "with a statement of this fingerprint"},
			{"protocol", "only sessions of this protocol: postgres, ssh, http or kubernetes"},
			{"before", "the next page (the next_before of the previous one)"},
		} {
			v := &[2]string{f.name}
			fs.StringVar(&v[1], f.name, "", f.help)
			filters = append(filters, v)
		}
	}
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	c, err := api.client(time.Minute)
	if err != nil {
		return err
	}
	if sub == "list" {
		if len(pos) > 0 {
			return usageError{fmt.Sprintf("sessions list takes no arguments (got %q)", pos)}
		}
		q := url.Values{"limit": {fmt.Sprint(*limit)}}
		if *identity != "" {
			q.Set("identity", *identity)
		}
		if *resource != "" {
			q.Set("resource", *resource)
		}
		for _, f := range filters {
			if f[1] != "" {
				q.Set(f[0], f[1])
			}
		}
		var out struct {
			Sessions   []query.Session `json:"sessions"`
			NextBefore string          `json:"next_before,omitempty"`
		}
		if err := c.get("/api/v1/sessions?"+q.Encode(), &out); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(out)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SESSION\tIDENTITY\tRESOURCE\tPROTOCOL\tLOGIN\tSTART\tEND\tSTATEMENTS\tDENIED\tHELD\tAPPROVED\tMASKED\tSUBJECT")
		for _, s := range out.Sessions {
			end := "(open)"
			if s.End != nil {
				end = s.End.Local().Format(time.DateTime)
			}
			name := s.Name
			if name == "" {
				name = s.Identity
			}
			login := s.Login
			if login == "" {
				login = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", s.ID, name, s.Resource, s.Protocol, login, s.Start.Local().Format(time.DateTime), end, s.Statements, s.Denied, s.Held, s.Approved, s.Masked, s.Identity)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if out.NextBefore != "" {
			fmt.Fprintf(stdout, "more: --before %s\n", out.NextBefore)
		}
		return nil
	}
	if len(pos) != 1 {
		return usageError{"sessions replay needs one session ID"}
	}
	if !(*ssh.speed > 0) {
		return usageError{fmt.Sprintf("--speed must be above 0 (got %g)", *ssh.speed)}
	}
	var r query.Replay
	if err := c.get("/api/v1/sessions/"+url.PathEscape(pos[0]), &r); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(r)
	}
	if query.IsSSH(r.Events) {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		return replaySSH(ctx, stdout, stderr, &r, &ssh, sleepCtx)
	}
	if query.IsHTTP(r.Events) {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		return replayHTTP(ctx, stdout, stderr, &r, &ssh, sleepCtx)
	}
	if flag := ssh.sshOnly(); flag != "" {
		return usageError{fmt.Sprintf("%s is for SSH and Kubernetes sessions; session %s is not one", flag, r.SessionID)}
	}
	return printReplay(stdout, &r)
}

// who is an identity as people read it: its name, with the token subject when that differs
// (the subject is the key that revocations, approvals and the IdP itself know).
func who(id schemas.Identity) string {
	if id.Name == "" || id.Name == id.Subject {
		return id.Subject
	}
	return id.Name + " [sub " + id.Subject + "]"
}

// nameOf is an identity's name, else its token subject (for tables).
func nameOf(id schemas.Identity) string {
	if id.Name != "" {
		return id.Name
	}
	return id.Subject
}

func printReplay(w io.Writer, r *query.Replay) error {
	for _, e := range r.Events {
		ts := e.Time.Local().Format("15:04:05.000000")
		switch e.Type {
		case schemas.TypeSessionStart:
			var p schemas.SessionStart
			_ = e.Decode(&p)
			fmt.Fprintf(w, "%s  #%d session start: %s (%s) → %s from %s, tls=%v, audit=%s\n", ts, e.Seq, who(e.Identity), strings.Join(e.Identity.Groups, ","), e.Resource, p.ClientAddr, p.TLS, p.AuditMode)
		case schemas.TypeDbQuery:
			var p schemas.DbQuery
			_ = e.Decode(&p)
			fmt.Fprintf(w, "%s  #%d query %d (%s): %s\n", ts, e.Seq, p.QueryID, p.Protocol, p.SQL)
		case schemas.TypeDbBind:
			var p schemas.DbBind
			_ = e.Decode(&p)
			vals := make([]string, len(p.Params))
			for i, v := range p.Params {
				vals[i] = fmt.Sprintf("$%d=NULL", i+1)
				if v != nil {
					vals[i] = fmt.Sprintf("$%d=%q", i+1, *v)
				}
			}
			more := ""
			if p.Truncated {
				more = " (truncated)"
			}
			fmt.Fprintf(w, "%s  #%d   bind: %s%s\n", ts, e.Seq, strings.Join(vals, ", "), more)
		case schemas.TypeDecision:
			var p schemas.Decision
			_ = e.Decode(&p)
			rule := "default"
			if p.Rule != "" {
				rule = p.Policy + "/" + p.Rule
			}
			fmt.Fprintf(w, "%s  #%d   decision: %s by %s (rev %d): %s\n", ts, e.Seq, strings.ToUpper(p.Effect), rule, p.Revision, p.Reason)
			if p.ShadowEffect != "" {
				fmt.Fprintf(w, "%s  #%d   shadow: would %s by %s: %s\n", ts, e.Seq, strings.ToUpper(p.ShadowEffect), ruleName(p.ShadowPolicy, p.ShadowRule), p.ShadowReason)
			}
		case schemas.TypeDbResultChunk:
			var p schemas.DbResultChunk
			_ = e.Decode(&p)
			if len(p.Columns) > 0 {
				names := make([]string, len(p.Columns))
				for i, c := range p.Columns {
					names[i] = c.Name
				}
				fmt.Fprintf(w, "%s  #%d   columns: %s\n", ts, e.Seq, strings.Join(names, " | "))
			}
			for _, row := range p.Rows {
				vals := make([]string, len(row))
				for i, v := range row {
					if v == nil {
						vals[i] = "NULL"
					} else {
						vals[i] = *v
					}
				}
				fmt.Fprintf(w, "%s  #%d   row: %s\n", ts, e.Seq, strings.Join(vals, " | "))
			}
			if p.ValuesTruncated > 0 {
				fmt.Fprintf(w, "%s  #%d   (%d value(s) above recorded in part)\n", ts, e.Seq, p.ValuesTruncated)
			}
		case schemas.TypeDbQueryDone:
			var p schemas.DbQueryDone
			_ = e.Decode(&p)
			extra := strings.Join(p.CommandTags, ", ")
			if p.Error != nil {
				extra = fmt.Sprintf("%s %s", p.Error.Sqlstate, p.Error.Message)
			}
			fmt.Fprintf(w, "%s  #%d   done: %s, %d rows (%d recorded) %s\n", ts, e.Seq, p.Status, p.Rows, p.RowsRecorded, extra)
		case schemas.TypeSessionEnd:
			var p schemas.SessionEnd
			_ = e.Decode(&p)
			fmt.Fprintf(w, "%s  #%d session end: %s, %d statements (%d denied, %d held for approval)%s\n", ts, e.Seq, p.Reason, p.Statements, p.Denied, p.Held, errSuffix(p.Error))
		case schemas.TypeApprovalRequested:
			var p schemas.ApprovalRequested
			_ = e.Decode(&p)
			fmt.Fprintf(w, "%s  #%d approval %s requested (rule %s: %s), approvers %s, deadline %s\n", ts, e.Seq, p.ApprovalID, p.Rule, p.Reason,
				strings.Join(p.Approvers, ","), p.Deadline.Local().Format(time.TimeOnly))
		case schemas.TypeApprovalDecided:
			var p schemas.ApprovalDecided
			_ = e.Decode(&p)
			fmt.Fprintf(w, "%s  #%d approval %s: %s via %s %s → %s\n", ts, e.Seq, p.ApprovalID, p.Decision, p.Via, p.Reason, p.Outcome)
		case schemas.TypeSessionTerminated:
			var p schemas.SessionTerminated
			_ = e.Decode(&p)
			fmt.Fprintf(w, "%s  #%d session terminated by the gateway: %s %s %s\n", ts, e.Seq, p.Cause, p.Revocation, p.Reason)
		case schemas.TypeSessionSealed:
			var p schemas.SessionSealed
			_ = e.Decode(&p)
			fmt.Fprintf(w, "%s  #%d sealed: %d events, key %s\n", ts, e.Seq, p.Events, p.KeyID)
		default:
			fmt.Fprintf(w, "%s  #%d %s %s\n", ts, e.Seq, e.Type, string(e.Payload))
		}
	}
	if !r.ChainOK {
		fmt.Fprintf(w, "WARNING: hash chain broken: %s\n", r.ChainError)
	} else {
		fmt.Fprintf(w, "hash chain intact (%d events)\n", len(r.Events))
	}
	return nil
}

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

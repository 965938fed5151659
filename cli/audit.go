package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
)

// errTampered makes `audit verify` exit non-zero.
type errTampered struct{ problems int }

func (e errTampered) Error() string {
	return fmt.Sprintf("the audit trail does not verify: %d problem(s)", e.problems)
}

func auditCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "retention" {
		return auditRetention(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "verify" {
		return usageError{"audit needs a subcommand: verify [--session ID | --since T], or retention [--dry-run]"}
	}
	fs := newFlags("audit verify", stdout)
	session := fs.String("session", "", "verify one session")
	since := fs.String("since", "", "verify every session with events since this RFC 3339 time (default: the last 24 hours)")
	asJSON := fs.Bool("json", false, "print JSON")
	api := addAPIFlags(fs, "auditor", "an auditor's")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 || (*session != "" && *since != "") {
		return usageError{"audit verify takes --session or --since, not both, and no arguments"}
	}
	if *since != "" {
		if _, err := time.Parse(time.RFC3339, *since); err != nil {
			return usageError{fmt.Sprintf("--since %q is not an RFC 3339 time", *since)}
		}
	}
	c, err := api.client(10 * time.Minute)
	if err != nil {
		return err
	}
	q := url.Values{}
	if *session != "" {
		q.Set("session", *session)
	}
	if *since != "" {
		q.Set("since", *since)
	}
	var v query.Verification
	if err := c.get("/api/v1/audit/verify?"+q.Encode(), &v); err != nil {
		return err
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(v); err != nil {
			return err
		}
	} else {
		for _, p := range append(append(v.Truncated, v.Superseded...), v.Problems...) {
			seq := ""
			if p.Seq != 0 {
				seq = fmt.Sprintf(" seq %d", p.Seq)
			}
			fmt.Fprintf(stdout, "%-9s session %s%s: %s\n", strings.ToUpper(p.Kind), p.Session, seq, p.Detail)
		}
		fmt.Fprintln(stdout, v.Covered())
		fmt.Fprintf(stdout, "%d session(s), %d event(s) checked, %d problem(s)", v.Sessions, v.Events, len(v.Problems))
		if len(v.Truncated) > 0 {
			fmt.Fprintf(stdout, ", %d session(s) truncated by retention", len(v.Truncated))
		}
		if len(v.Superseded) > 0 {
			fmt.Fprintf(stdout, ", %d sweeper's end(s) superseded by their gateway's later events", len(v.Superseded))
		}
		fmt.Fprintln(stdout)
	}
	if len(v.Problems) > 0 {
		return errTampered{len(v.Problems)}
	}
	return nil
}

func auditRetention(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit retention", stdout)
	dry := fs.Bool("dry-run", false, "list what would be dropped; drop nothing")
	asJSON := fs.Bool("json", false, "print JSON")
	api := addAPIFlags(fs, "admin", "an administrator's")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{"audit retention takes no arguments"}
	}
	c, err := api.client(time.Minute)
	if err != nil {
		return err
	}
	var res schemas.AuditRetention
	if err := c.post("/api/v1/audit/retention?dry_run="+strconv.FormatBool(*dry), nil, &res); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	verb := "dropped"
	if *dry {
		verb = "would drop"
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tMONTH\tNEWEST\tEVENTS\tKEEP\tRULE")
	for _, p := range res.Dropped {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\n", p.Resource, p.Month, p.Newest.Format("2006-01-02"), p.Events, p.Keep, p.Rule)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range res.Failed {
		fmt.Fprintf(stdout, "FAILED %s\n", f)
	}
	fmt.Fprintf(stdout, "%s %d partition(s), %d event(s)\n", verb, len(res.Dropped), res.Events)
	if len(res.Failed) > 0 {
		return fmt.Errorf("%d partition(s) could not be dropped", len(res.Failed))
	}
	return nil
}

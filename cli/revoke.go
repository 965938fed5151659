package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/revoke"
)

// revokeCmd is `gatehouse revoke --identity X | --session ID | --grant ID`.
func revokeCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("revoke", stdout)
	ident := fs.String("identity", "", "revoke an identity, by name (e.g. email) or token subject: its live sessions end, new ones are refused")
	sess := fs.String("session", "", "end one session")
	grant := fs.String("grant", "", "revoke a grant")
	reason := fs.String("reason", "", "why (required): shown to the clients whose sessions end, and recorded for the auditors")
	dur := fs.String("for", "", "the revocation lapses after this long (default: until lifted)")
	lift := fs.Bool("lift", false, "lift the revocation instead")
	api := addAPIFlags(fs, "admin", "in dev: gatehouse token --dev --sub admin --groups gatehouse-admins")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	var req revoke.Request
	n := 0
	for kind, v := range map[string]string{revoke.KindIdentity: *ident, revoke.KindSession: *sess, revoke.KindGrant: *grant} {
		if v != "" {
			req.Kind, req.Value = kind, v
			n++
		}
	}
	if n != 1 || len(pos) > 0 {
		return usageError{"revoke needs exactly one of --identity, --session or --grant"}
	}
	if strings.TrimSpace(*reason) == "" {
		return usageError{`revoke needs --reason: why access is revoked (or lifted), e.g. --reason "credential leak, INC-42"; the clients whose sessions end are told it, and the audit trail keeps it`}
	}
	c, err := api.client(time.Minute)
	if err != nil {
		return err
	}
	req.Reason, req.For, req.Lift = *reason, *dur, *lift
	body, _ := json.Marshal(req)
	var rv revoke.Revocation
	if err := c.post("/api/v1/revocations", body, &rv); err != nil {
		return err
	}
	if rv.Lifted {
		fmt.Fprintf(stdout, "revocation of %s %s lifted\n", rv.Kind, rv.Value)
		return nil
	}
	until := "until lifted"
	if !rv.Until.IsZero() {
		until = "until " + rv.Until.Local().Format(time.RFC3339)
	}
	fmt.Fprintf(stdout, "revoked %s %s %s\n", rv.Kind, rv.Value, until)
	return nil
}

// revocationsCmd lists the revocations in force.
func revocationsCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("revocations", stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	api := addAPIFlags(fs, "admin", "in dev: gatehouse token --dev --sub admin --groups gatehouse-admins")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := api.client(time.Minute)
	if err != nil {
		return err
	}
	var out struct {
		Revocations []revoke.Revocation `json:"revocations"`
	}
	if err := c.get("/api/v1/revocations", &out); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tVALUE\tBY\tAT\tUNTIL\tREASON")
	for _, r := range out.Revocations {
		until := "never (until lifted)"
		if !r.Until.IsZero() {
			until = r.Until.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Kind, r.Value, r.Revoker(), r.At.Local().Format(time.RFC3339), until, r.Reason)
	}
	return tw.Flush()
}

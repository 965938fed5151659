package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/approvals"
	"github.com/gatehouse/gatehouse/approvals/grants"
)

func grantsCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "request" && args[0] != "list") {
		return usageError{"grants needs a subcommand: request --resource R --role ROLE --for 2h --reason WHY, or list"}
	}
	sub := args[0]
	fs := newFlags("grants "+sub, stdout)
	var resource, role, dur, reason *string
	if sub == "request" {
		resource = fs.String("resource", "", "the resource")
		role = fs.String("role", "", "the role (see grants: in the config)")
		dur = fs.String("for", "", "how long, e.g. 2h")
		reason = fs.String("reason", "", "why (an incident or ticket)")
	}
	asJSON := fs.Bool("json", false, "print JSON")
	api := addAPIFlags(fs, "", "")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("grants %s takes no arguments (got %q)", sub, pos)}
	}
	c, err := api.client(time.Minute)
	if err != nil {
		return err
	}
	if sub == "list" {
		var out struct {
			Grants  []grants.Grant `json:"grants"`
			Scope   string         `json:"scope"` // own or all
			Subject string         `json:"subject"`
		}
		if err := c.get("/api/v1/grants", &out); err != nil {
			return err
		}
		// Whose grants these are, on stderr: an empty table means "none of yours", not "none".
		switch out.Scope {
		case "all":
			fmt.Fprintf(stderr, "every grant in force (an admin token): %d\n", len(out.Grants))
		case "own":
			fmt.Fprintf(stderr, "grants in force for %s only (yours; an admin token lists everyone's): %d\n", out.Subject, len(out.Grants))
		default:
			fmt.Fprintln(stderr, "the server did not say whose grants these are (yours only, unless your token is an admin's)")
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(out)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSUBJECT\tRESOURCE\tROLE\tEXPIRES\tAPPROVED BY")
		for _, g := range out.Grants {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Subject, g.Resource, g.Role, g.Expires.Local().Format(time.RFC3339), strings.Join(g.ApprovedBy, ","))
		}
		return tw.Flush()
	}
	if *resource == "" || *role == "" || *dur == "" || *reason == "" {
		return usageError{"grants request needs --resource, --role, --for and --reason"}
	}
	body, _ := json.Marshal(approvals.GrantRequest{Resource: *resource, Role: *role, For: *dur, Reason: *reason})
	var a approvals.Approval
	if err := c.post("/api/v1/grants", body, &a); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(a)
	}
	fmt.Fprintf(stdout, "grant of %s on %s for %s requested as approval %s (approvers: %s)\n", *role, *resource, *dur, a.ID, strings.Join(a.Request.Approvers, ", "))
	return nil
}

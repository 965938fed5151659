package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/approvals"
)

func approvalsCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "approve" && args[0] != "deny") {
		return usageError{"approvals needs a subcommand: list, approve ID, or deny ID --reason R"}
	}
	sub := args[0]
	fs := newFlags("approvals "+sub, stdout)
	all, reason := new(bool), new(string)
	if sub == "list" {
		all = fs.Bool("all", false, "decided ones too")
	} else {
		reason = fs.String("reason", "", map[string]string{"approve": "why (recorded with the decision)", "deny": "why (required; shown to the requester)"}[sub])
	}
	asJSON := fs.Bool("json", false, "print JSON")
	api := addAPIFlags(fs, "", "in dev: gatehouse token --dev --sub approver-1 --groups approvers")
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
			return usageError{"approvals list takes no arguments"}
		}
		path := "/api/v1/approvals"
		if *all {
			path += "?all=1"
		}
		var out struct {
			Approvals []approvals.Approval `json:"approvals"`
		}
		if err := c.get(path, &out); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(out)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tREQUESTER\tRESOURCE\tAPPROVALS\tDEADLINE\tSTATEMENT")
		for _, a := range out.Approvals {
			stmt := approvals.Printable(a.Request.Statement)
			if a.Request.Kind == "grant" {
				stmt = fmt.Sprintf("grant %s for %s", a.Request.GrantRole, time.Duration(a.Request.GrantSeconds)*time.Second)
			}
			if r := []rune(stmt); len(r) > 60 {
				stmt = string(r[:57]) + "..."
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", a.ID, a.Status, nameOf(a.Requester), a.Resource, len(a.Approvals), a.Request.Required,
				a.Request.Deadline.Local().Format(time.TimeOnly), strings.ReplaceAll(stmt, "\n", " "))
		}
		return tw.Flush()
	}
	if len(pos) != 1 {
		return usageError{fmt.Sprintf("approvals %s needs one approval ID", sub)}
	}
	if sub == "deny" && *reason == "" {
		return usageError{"approvals deny needs --reason"}
	}
	body, _ := json.Marshal(map[string]string{"reason": *reason, "via": "cli"})
	var a approvals.Approval
	if err := c.post("/api/v1/approvals/"+url.PathEscape(pos[0])+"/"+sub, body, &a); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(a)
	}
	fmt.Fprintf(stdout, "approval %s: %s (%d of %d approvals)\n", a.ID, a.Status, len(a.Approvals), a.Request.Required)
	return nil
}

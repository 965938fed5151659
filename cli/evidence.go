package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/query"
)

// evidenceCmd prints an evidence report: access, privileged, denials, grants, changes or agents.
func evidenceCmd(args []string, stdout, stderr io.Writer) error {
	kinds := []string{"access", "privileged", "denials", "grants", "changes", "agents"}
	if len(args) == 0 || !strings.Contains(" "+strings.Join(kinds, " ")+" ", " "+args[0]+" ") {
		return usageError{"evidence needs a report: " + strings.Join(kinds, ", ")}
	}
	fs := newFlags("evidence "+args[0], stdout)
	since := fs.String("since", "", "from this RFC 3339 time (default: 30 days ago)")
	until := fs.String("until", "", "to this RFC 3339 time (default: now)")
	format := fs.String("format", "csv", "json or csv")
	label := fs.String("label", "", "privileged: resources with this label (default env=production)")
	api := addAPIFlags(fs, "auditor", "an auditor's")
	if _, err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	c, err := api.client(5 * time.Minute)
	if err != nil {
		return err
	}
	q := url.Values{"format": {*format}}
	if *since != "" {
		q.Set("since", *since)
	}
	if *until != "" {
		q.Set("until", *until)
	}
	if *label != "" {
		q.Set("label", *label)
	}
	resp, err := c.do(http.MethodGet, "/api/v1/evidence/"+args[0]+"?"+q.Encode(), nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// What the report covered goes to stderr: stdout stays the report alone.
	var cov query.Coverage
	if h := resp.Header.Get(query.HeaderCoverage); h == "" || json.Unmarshal([]byte(h), &cov) != nil {
		fmt.Fprintf(stderr, "evidence %s: the server did not say what the report covered\n", args[0])
	} else {
		fmt.Fprintln(stderr, cov.Summary())
	}
	_, err = io.Copy(stdout, resp.Body)
	return err
}

package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// evidenceCmd prints an evidence report: access, denials, grants or changes.
func evidenceCmd(args []string, stdout, stderr io.Writer) error {
	kinds := []string{"access", "privileged", "denials", "grants", "changes"}
	if len(args) == 0 || !strings.Contains(" "+strings.Join(kinds, " ")+" ", " "+args[0]+" ") {
		return usageError{"evidence needs a report: " + strings.Join(kinds, ", ")}
	}
	fs := newFlags("evidence "+args[0], "evidence access|privileged|denials|grants|changes [--since T] [--until T] [--format json|csv] [--label env=production]", stderr)
	since := fs.String("since", "", "from this RFC 3339 time (default: 30 days ago)")
	until := fs.String("until", "", "to this RFC 3339 time (default: now)")
	format := fs.String("format", "csv", "json or csv")
	label := fs.String("label", "", "privileged: resources with this label (default env=production)")
	token := fs.String("token", os.Getenv("GATEHOUSE_TOKEN"), "auditor token (default $GATEHOUSE_TOKEN)")
	base := fs.String("url", apiURL(), "Gatehouse HTTP address (default $GATEHOUSE_URL)")
	if _, err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	if *token == "" {
		return usageError{"no token: pass --token or set GATEHOUSE_TOKEN (an auditor's)"}
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
	req, err := http.NewRequest(http.MethodGet, strings.TrimRight(*base, "/")+"/api/v1/evidence/"+args[0]+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+*token)
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the Gatehouse API at %s: %w", *base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return fmt.Errorf("%s: %s", resp.Status, apiMessage(b))
	}
	_, err = io.Copy(stdout, resp.Body)
	return err
}

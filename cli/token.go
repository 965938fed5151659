package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/services/identity"
)

func apiURL() string {
	if u := os.Getenv("GATEHOUSE_URL"); u != "" {
		return strings.TrimRight(u, "/")
	}
	return "http://127.0.0.1:8080"
}

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", stdout)
	dev := fs.Bool("dev", false, "mint from the development issuer of a running 'gatehouse dev' (required: production tokens come from your IdP)")
	sub := fs.String("sub", "", "subject (identity) of the token")
	groups := fs.String("groups", "", "comma-separated groups")
	ttl := fs.Duration("ttl", time.Hour, "lifetime (at most 24h)")
	kind := fs.String("kind", "", "service or human (default: service)")
	obo := fs.String("on-behalf-of", "", "the human behind a service token (act.sub)")
	base := fs.String("url", apiURL(), "Gatehouse HTTP address")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if !*dev {
		return usageError{"token needs --dev: only the development issuer mints tokens; in production use your IdP"}
	}
	if *sub == "" {
		return usageError{"token needs --sub"}
	}
	form := url.Values{"sub": {*sub}, "groups": {*groups}, "ttl": {ttl.String()}, "kind": {*kind}, "on_behalf_of": {*obo}}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.PostForm(*base+identity.DevIssuerPath+"/token", form)
	if err != nil {
		return fmt.Errorf("cannot reach the development issuer at %s (is 'gatehouse dev' running?): %w", *base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("development issuer: %s: %s", resp.Status, apiMessage(body))
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return fmt.Errorf("development issuer sent no token")
	}
	fmt.Fprintln(stdout, tr.AccessToken)
	return nil
}

// apiMessage extracts echo's {"message": ...} from an error body.
func apiMessage(body []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &m) == nil && m.Message != "" {
		return m.Message
	}
	return strings.TrimSpace(string(body))
}

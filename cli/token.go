package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/gatehouse/gatehouse/services/identity"
)

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", stdout)
	dev := fs.Bool("dev", false, "mint from the development issuer of a running 'gatehouse dev' (required: production tokens come from your IdP)")
	sub := fs.String("sub", "", "subject (identity) of the token")
	groups := fs.String("groups", "", "comma-separated groups")
	ttl := fs.Duration("ttl", time.Hour, "lifetime (at most 24h)")
	kind := fs.String("kind", "", "service or human (default: service)")
	obo := fs.String("on-behalf-of", "", "the human behind a service token (act.sub)")
	name := fs.String("name", "", "the identity's readable name, as an IdP's email claim carries it (default: none, so the subject)")
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
	form := url.Values{"sub": {*sub}, "groups": {*groups}, "ttl": {ttl.String()}, "kind": {*kind}, "on_behalf_of": {*obo}, "name": {*name}}
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

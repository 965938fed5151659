package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/services/identity"
)

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", stdout)
	dev := fs.Bool("dev", false, "mint from the development issuer of a running 'gatehouse dev' (required: production tokens come from your IdP)")
	sub := fs.String("sub", "", "subject (identity) of the token")
	groups := fs.String("groups", "", "comma-separated groups")
	ttl := fs.Duration("ttl", time.Hour, "lifetime (at most 24h)")
	kind := fs.String("kind", "", "service, human or agent (an AI agent; default: service)")
	obo := fs.String("on-behalf-of", "", "the person behind a service's or an agent's token (act.sub)")
	name := fs.String("name", "", "the identity's readable name, as an IdP's email claim carries it (default: none, so the subject)")
	base := fs.String("url", apiURL(), "Gatehouse HTTP address")
	cached := fs.Bool("cached", false, "print the access token gatehouse login keeps instead, renewed with its refresh token when it expires within a minute (for scripts)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *cached {
		if *dev || *sub != "" {
			return usageError{"token --cached prints the sign-in's token: it takes no --dev or --sub"}
		}
		server := ""
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "url" {
				server = strings.TrimRight(*base, "/")
			}
		})
		return cachedTokenCmd(wantServer(server), stdout)
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

package cli

// The CLI's client of the Gatehouse HTTP API: the --token and --url flags every API
// command takes, the token's shape checked before it is sent, and the API's errors as
// messages.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// apiURL is the API's base: $GATEHOUSE_URL, or gatehouse dev's.
func apiURL() string {
	if u := os.Getenv("GATEHOUSE_URL"); u != "" {
		return strings.TrimRight(u, "/")
	}
	return "http://127.0.0.1:8080"
}

type apiClient struct {
	base, token string
	http        *http.Client
}

// apiAccess is the --token and --url flags of a command that calls the HTTP API.
type apiAccess struct {
	token, base *string
	hint        string // whose token, or how to get one, for the error without one
}

// addAPIFlags adds --token and --url to fs. who says whose token the command needs
// ("admin", "auditor", or "" for anyone's); hint is added to the error without one.
func addAPIFlags(fs *flag.FlagSet, who, hint string) *apiAccess {
	desc := "token to send (default: $GATEHOUSE_TOKEN, else the token of gatehouse login)"
	if who != "" {
		desc = "an " + who + "'s " + desc
	}
	return &apiAccess{token: fs.String("token", "", desc),
		base: fs.String("url", "", "Gatehouse HTTP address (default: $GATEHOUSE_URL, else http://127.0.0.1:8080)"), hint: hint}
}

// client is the API client for the flags given, or a usage error without a token.
func (a *apiAccess) client(timeout time.Duration) (*apiClient, error) {
	tok, from := *a.token, "--token"
	if tok == "" {
		tok, from = strings.TrimSpace(os.Getenv("GATEHOUSE_TOKEN")), "GATEHOUSE_TOKEN"
	}
	base := *a.base
	if tok == "" {
		// Signed in with gatehouse login: its token (renewed when due), for its gateway.
		if path, err := loginCachePath(); err == nil {
			if c, err := readLoginCache(path); err == nil && (base == "" || strings.TrimRight(base, "/") == c.Server) {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				if tok, err = c.fresh(ctx, &http.Client{Timeout: timeout}, path, time.Now()); err != nil {
					return nil, err
				}
				from, base = "gatehouse login", c.Server
			}
		}
	}
	if tok == "" {
		msg := "no token: pass --token, set GATEHOUSE_TOKEN, or sign in with gatehouse login"
		if a.hint != "" {
			msg += " (" + a.hint + ")"
		}
		return nil, usageError{msg}
	}
	if err := looksLikeToken(tok); err != nil {
		return nil, usageError{fmt.Sprintf("%s is not a token: %v", from, err)}
	}
	if base == "" {
		base = apiURL()
	}
	return &apiClient{base: strings.TrimRight(base, "/"), token: tok, http: &http.Client{Timeout: timeout}}, nil
}

// looksLikeToken checks the shape of a JWT (three base64url parts) before it is sent, so
// that a password or a truncated paste is reported as what it is, naming where it came
// from; the API verifies the token itself.
func looksLikeToken(tok string) error {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return fmt.Errorf("a token is a JWT, three base64url parts separated by dots; this has %d part(s)", len(parts))
	}
	for i, p := range parts[:2] {
		if _, err := base64.RawURLEncoding.DecodeString(p); err != nil || p == "" {
			return fmt.Errorf("part %d of the JWT is not base64url", i+1)
		}
	}
	return nil
}

// do sends a request to the API; an answer other than 200 is an error with the API's
// message.
func (c *apiClient) do(method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Gatehouse API at %s: %w", c.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, fmt.Errorf("%s: %s", resp.Status, apiMessage(b))
	}
	return resp, nil
}

// call sends a request and decodes the JSON answer (at most limit bytes) into out.
func (c *apiClient) call(method, path string, body io.Reader, contentType string, limit int64, out any) error {
	resp, err := c.do(method, path, body, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// post sends a JSON body to the API and decodes the JSON answer.
func (c *apiClient) post(path string, body []byte, out any) error {
	return c.call(http.MethodPost, path, bytes.NewReader(body), "application/json", 1<<20, out)
}

func (c *apiClient) get(path string, out any) error {
	return c.call(http.MethodGet, path, nil, "", 256<<20, out)
}

// apiMessage is the message of an API error body (echo's {"message": ...}), or the body.
func apiMessage(body []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &m) == nil && m.Message != "" {
		return m.Message
	}
	return strings.TrimSpace(string(body))
}

package sshca

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// The certificate request is untrusted input: whatever the body, readKey answers a key or
// a 400/413 saying what was wrong, and never panics.
func FuzzReadKey(f *testing.F) {
	for _, s := range []string{
		`{"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb8yP3Xz0lq8Ww0s3bQvKxw7q7f5m1y8M3u9v1WjJ8C ada"}`,
		`{"public_key": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC"}`,
		`{"public_key": "command=\"x\" ssh-ed25519 AAAA"}`,
		`{"public_key": ""}`, `{}`, `[]`, `null`, `{"public_key": 1}`, "",
	} {
		f.Add(s)
	}
	e := echo.New()
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, CertificatesPath, strings.NewReader(body))
		c := e.NewContext(req, httptest.NewRecorder())
		pub, err := readKey(c)
		if err == nil {
			if pub == nil {
				t.Fatal("no key and no error")
			}
			return
		}
		var he *echo.HTTPError
		if !errors.As(err, &he) || (he.Code != http.StatusBadRequest && he.Code != http.StatusRequestEntityTooLarge) {
			t.Fatalf("error %v is not a 400 or 413", err)
		}
	})
}

package desired

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/services/config"
)

// Inline secrets of every kind of resource stay out of diffs (the audit trail) and out of
// what GET /api/v1/resources shows; the paths of files that hold them do not.
func TestRedactHidesInlineSecrets(t *testing.T) {
	rs := []config.Resource{
		{Name: "db", Postgres: &config.PostgresBackend{Address: "127.0.0.1:5432", User: "u", Password: "pg-Secret-1"}},
		{Name: "api", HTTP: &config.HTTPBackend{URL: "https://api.internal", BasicUser: "svc", BasicPassword: "basic-Secret-2", BearerFile: "/etc/gh/bearer"}},
		{Name: "api2", HTTP: &config.HTTPBackend{URL: "https://api2.internal", Bearer: "bearer-Secret-3"}},
		// A token pasted with its newline is a multi-line YAML block; a URL may carry a password.
		{Name: "api3", HTTP: &config.HTTPBackend{URL: "https://svc:url-Secret-4@api3.internal/v1", Bearer: "bearer-Secret-5\nsecond-line-Secret-6\n"}},
	}
	b, err := yaml.Marshal(Document{Resources: rs})
	require.NoError(t, err)
	out := redact(string(b))
	for _, s := range []string{"pg-Secret-1", "basic-Secret-2", "bearer-Secret-3", "url-Secret-4", "bearer-Secret-5", "second-line-Secret-6"} {
		require.Contains(t, string(b), s)
		require.NotContains(t, out, s)
	}
	require.Contains(t, out, "/etc/gh/bearer", "a file's path is not a secret")
	require.Equal(t, 4, strings.Count(out, "<redacted>"))
	require.Contains(t, out, "https://svc:xxxxx@api3.internal/v1", "the URL is kept, without its password")

	d := diff("resource", "api", nil, b)
	for _, s := range []string{"basic-Secret-2", "url-Secret-4", "second-line-Secret-6"} {
		require.NotContains(t, d, s)
	}
	require.Equal(t, "<redacted: not YAML>\n", redact("a: [unclosed\npassword: x"))
}

// An applied document holds at most maxDocumentItems policies and resources.
func TestDocumentItemsAreBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := range maxDocumentItems + 1 {
		fmt.Fprintf(&b, "  - {name: p%d, resources: [\"*\"], rules: [{name: r, effect: allow, when: \"true\"}]}\n", i)
	}
	e := echo.New()
	c := e.NewContext(httptest.NewRequest(http.MethodPut, "/api/v1/policies", strings.NewReader(b.String())), httptest.NewRecorder())
	_, err := readDocument(c)
	var he *echo.HTTPError
	require.ErrorAs(t, err, &he)
	require.Equal(t, http.StatusRequestEntityTooLarge, he.Code)
	require.Contains(t, he.Message, "at most 1000")
}

package policy_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// POST /api/v1/policy/test answers what the decision service in force would: its engine,
// the caller's live grants, the resource's catalog, for the caller or a named identity;
// mask and approval as the decision reply carries them; a statement that does not parse is
// a 400 with the parser's message; only admins and auditors may ask; the body is bounded.
func TestPolicyTestAPIDecidesWithWhatIsInForce(t *testing.T) {
	b := bustest.Connect(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ps := append([]config.Policy{{Name: "extra", Resources: []string{"demo"}, Rules: []config.Rule{
		{Name: "support-reads-customers", Effect: "allow", When: `"support" in identity.groups && request.sql.kinds.all(k, k == "select") && request.sql.tables.all(t, t == "public.customers")`},
		{Name: "support-sees-customers", Effect: "mask", When: `"support" in identity.groups && request.sql.tables.all(t, t == "public.customers")`,
			Mask: &config.Mask{Columns: []string{"customers.card_number"}}},
		{Name: "deletes", Effect: "require_approval", When: `"support" in identity.groups && "delete" in request.sql.kinds`,
			Approval: &config.Approval{Approvers: []string{"leads"}}},
		{Name: "granted", Effect: "allow", When: `grants.exists(g, g.role == "reader") && request.sql.kinds.all(k, k == "select")`},
	}}, {Name: "web", Resources: []string{"web-1"}, Rules: []config.Rule{
		{Name: "uptime", Effect: "allow", When: `request.ssh.login == "deploy" && request.ssh.programs.all(p, p == "uptime")`},
	}}}, demo...)
	eng, err := policy.Compile(ps, policy.RevisionOf(ps))
	require.NoError(t, err)
	svc := policy.NewService(b.NC, eng, prometheus.NewRegistry(), log)
	svc.Catalogs = &policy.Catalogs{}
	svc.Catalogs.Set(testCatalog.Source())
	svc.Grants = func(subject, resource string, now time.Time) []policy.Grant {
		if subject == "u-granted" && resource == "demo" {
			return []policy.Grant{{ID: "g-1", Role: "reader", Resource: "demo", Expires: now.Add(time.Hour)}}
		}
		return nil
	}
	resources := map[string]*config.Resource{
		"demo":   {Name: "demo", Type: "postgres", Labels: map[string]string{"env": "dev"}},
		"web-1":  {Name: "web-1", Type: "ssh", SSH: &config.SSHBackend{Logins: []string{"deploy", "root"}}},
		"orders": {Name: "orders", Type: "http"},
	}

	kv, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test_web_sessions"})
	require.NoError(t, err)
	web := identity.NewWebSessions(kv, kv, time.Hour, 8*time.Hour, "http://127.0.0.1:1")
	v := identity.NewVerifier(ctx, nil, log)
	v.UseWebSessions(web)
	e := echo.New()
	(&policy.TestAPI{Service: svc, Verifier: v, Groups: []string{"admins", "auditors"},
		Resource: func(name string) (*config.Resource, bool) { r, ok := resources[name]; return r, ok }}).Register(e)
	signIn := func(id schemas.Identity) (*http.Cookie, string) {
		rec := httptest.NewRecorder()
		s, err := web.Create(ctx, e.NewContext(httptest.NewRequest(http.MethodGet, "/", nil), rec), id, "oidc", time.Time{})
		require.NoError(t, err)
		return rec.Result().Cookies()[0], s.CSRF
	}
	auditor, auditorCSRF := signIn(schemas.Identity{Subject: "u-aud", Name: "aud@example.com", Groups: []string{"auditors", "dba"}, Kind: "human"})
	post := func(cookie *http.Cookie, csrf, body string) (int, string) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/api/v1/policy/test", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(identity.CSRFHeader, csrf)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	test := func(body string) policy.TestResult {
		t.Helper()
		code, out := post(auditor, auditorCSRF, body)
		require.Equal(t, http.StatusOK, code, out)
		var r policy.TestResult
		require.NoError(t, json.Unmarshal([]byte(out), &r))
		require.Equal(t, eng.Revision(), r.Revision)
		return r
	}

	// As the caller (in dba): allowed by the demo's dba rule; the catalog in force used.
	r := test(`{"resource":"demo","statement":"select * from orders"}`)
	require.Equal(t, "allow", r.Effect)
	require.Equal(t, "orders", r.Policy)
	require.Equal(t, "dba", r.Rule)
	require.Equal(t, "u-aud", r.Identity.Subject)
	require.Equal(t, "test", r.CatalogVersion)
	require.Equal(t, []string{"public.orders"}, r.Tables)

	// As another identity: masked, with the columns; held, with the approvers; denied by
	// a rule; the default deny; allowed by a live grant of that identity.
	as := func(sub, groups, sql string) policy.TestResult {
		return test(`{"resource":"demo","statement":` + quote(sql) + `,"identity":{"subject":"` + sub + `","groups":[` + groups + `]}}`)
	}
	r = as("u-sup", `"support"`, "select name, card_number from customers")
	require.Equal(t, "mask", r.Effect, r.Reason)
	require.Equal(t, "u-sup", r.Identity.Name, "named by its subject")
	require.NotNil(t, r.Mask)
	require.Equal(t, "public.customers.card_number", r.Mask.Columns[0].Column)
	r = as("u-sup", `"support"`, "delete from customers where id = 1")
	require.Equal(t, "require_approval", r.Effect)
	require.Equal(t, []string{"leads"}, r.Approval.Approvers)
	r = as("u-dba", `"dba"`, "drop database demo")
	require.Equal(t, "deny", r.Effect)
	require.Equal(t, "no-drop-database", r.Rule)
	require.Equal(t, "never", r.Reason)
	r = as("u-none", ``, "select * from orders")
	require.Equal(t, "deny", r.Effect)
	require.Empty(t, r.Rule)
	r = as("u-granted", ``, "select * from orders")
	require.Equal(t, "allow", r.Effect)
	require.Equal(t, "granted", r.Rule)
	require.Equal(t, []string{"g-1"}, r.Grants)

	// SSH: a command, as the resource's first login or one named.
	r = test(`{"resource":"web-1","command":"uptime"}`)
	require.Equal(t, "allow", r.Effect)
	require.Equal(t, "uptime", r.Rule)
	r = test(`{"resource":"web-1","command":"uptime","login":"root"}`)
	require.Equal(t, "deny", r.Effect)
	r = test(`{"resource":"web-1","command":"rm -rf /"}`)
	require.Equal(t, "deny", r.Effect)

	// Mistakes are 4xx that say what is wrong.
	for _, c := range []struct {
		body string
		code int
		msg  string
	}{
		{`{"resource":"demo","statement":"selec * frm orders"}`, 400, `the statement does not parse: syntax error at or near \"selec\"`},
		{`{"resource":"demo","statement":"select 1","extra":1}`, 400, `unknown field \"extra\"`},
		{`{"resource":"nope","statement":"select 1"}`, 404, `no resource \"nope\"`},
		{`{"resource":"demo","command":"ls"}`, 400, "is a PostgreSQL resource: give a statement"},
		{`{"resource":"web-1","statement":"select 1"}`, 400, "is an SSH resource: give a command"},
		{`{"resource":"web-1","command":"uptime","login":"admin"}`, 400, `login \"admin\" is not one of resource web-1's (deploy, root)`},
		{`{"resource":"orders","statement":"select 1"}`, 400, "only PostgreSQL statements and SSH commands are tested here"},
		{`{"resource":"demo","statement":"select 1","identity":{"name":"x"}}`, 400, "identity.subject is empty"},
		{`{"resource":"demo","statement":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "the body is over 65536 bytes"},
	} {
		code, out := post(auditor, auditorCSRF, c.body)
		require.Equal(t, c.code, code, out)
		require.Contains(t, out, c.msg)
	}
	code, out := post(auditor, auditorCSRF, `{"resource":"demo","statement":"select * form orders"}`)
	require.Equal(t, http.StatusBadRequest, code)
	var perr struct{ Position int }
	require.NoError(t, json.Unmarshal([]byte(out), &perr))
	require.Equal(t, 10, perr.Position, out) // at "form"

	// Only admins and auditors.
	dev, devCSRF := signIn(schemas.Identity{Subject: "u-dev", Groups: []string{"dba"}, Kind: "human"})
	code, out = post(dev, devCSRF, `{"resource":"demo","statement":"select 1"}`)
	require.Equal(t, http.StatusForbidden, code, out)
	require.Contains(t, out, "not in an admin or auditor group")
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

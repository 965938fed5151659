package policy_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
)

func decideHTTP(t *testing.T, e *policy.Engine, groups []string, h schemas.HTTPRequest) schemas.DecisionReply {
	t.Helper()
	return e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Groups: groups},
		Resource: schemas.Resource{Name: "orders-api", Type: "http"}, HTTP: &h}}, time.Now())
}

func compile(t *testing.T, resource string, rules ...config.Rule) *policy.Engine {
	t.Helper()
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{resource}, Rules: rules}}, 1)
	require.NoError(t, err)
	return e
}

// jsonBody is a body as the policy service decodes it (numbers as json.Number).
func jsonBody(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v))
	return v
}

func TestDecideHTTPMethodsAndPaths(t *testing.T) {
	e := compile(t, "orders-api",
		config.Rule{Name: "read", Effect: "allow", When: `request.http.method in ["GET", "HEAD"] && request.http.path.startsWith("/customers/")`},
		config.Rule{Name: "support-edits", Effect: "allow", When: `"support" in identity.groups && request.http.method == "PATCH" && request.http.route == "/customers/{id}"`},
		config.Rule{Name: "not-42", Effect: "deny", When: `"id" in request.http.params && request.http.params.id == "42"`, Reason: "customer 42 is frozen"},
		config.Rule{Name: "no-export", Effect: "deny", When: `"format" in request.http.query && "csv" in request.http.query.format`, Reason: "no CSV exports"},
		config.Rule{Name: "no-bots", Effect: "deny", When: `"user-agent" in request.http.headers && request.http.headers["user-agent"].startsWith("curl/")`, Reason: "no scripts"},
		config.Rule{Name: "admin-area", Effect: "deny", When: `request.http.segments.size() > 0 && request.http.segments[0] == "admin"`, Reason: "never"},
	)
	customer := func(method, id string) schemas.HTTPRequest {
		return schemas.HTTPRequest{Method: method, Path: "/customers/" + id, Route: "/customers/{id}", Params: map[string]string{"id": id}}
	}
	for _, tc := range []struct {
		name   string
		groups []string
		req    schemas.HTTPRequest
		effect string
		rule   string
		reason string
	}{
		{"read a customer", nil, customer("GET", "7"), "allow", "read", ""},
		{"HEAD too", nil, customer("HEAD", "7"), "allow", "read", ""},
		{"delete: default deny", nil, customer("DELETE", "7"), "deny", "", "no rule allows DELETE /customers/7 on orders-api"},
		{"support patches", []string{"support"}, customer("PATCH", "7"), "allow", "support-edits", ""},
		{"others do not", nil, customer("PATCH", "7"), "deny", "", "no rule allows PATCH /customers/7 on orders-api"},
		{"route param denied", []string{"support"}, customer("PATCH", "42"), "deny", "not-42", "customer 42 is frozen"},
		{"prefix is a path prefix", nil, schemas.HTTPRequest{Method: "GET", Path: "/customersx"}, "deny", "", "no rule allows GET /customersx"},
		{"query", nil, schemas.HTTPRequest{Method: "GET", Path: "/customers/", Query: map[string][]string{"format": {"json", "csv"}}}, "deny", "no-export", "no CSV exports"},
		{"query other", nil, schemas.HTTPRequest{Method: "GET", Path: "/customers/", Query: map[string][]string{"format": {"json"}}}, "allow", "read", ""},
		{"header", nil, schemas.HTTPRequest{Method: "GET", Path: "/customers/7", Headers: map[string]string{"user-agent": "curl/8.5"}}, "deny", "no-bots", "no scripts"},
		{"segments", nil, schemas.HTTPRequest{Method: "GET", Path: "/admin/users"}, "deny", "admin-area", "never"},
		{"a path with spaces is quoted", nil, schemas.HTTPRequest{Method: "PUT", Path: "/a b"}, "deny", "", `no rule allows PUT "/a b" on orders-api`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decideHTTP(t, e, tc.groups, tc.req)
			require.Equal(t, tc.effect, d.Effect, d.Reason)
			require.Equal(t, tc.rule, d.Rule)
			require.Contains(t, d.Reason, tc.reason)
			require.False(t, d.Cacheable, "the proxy's cache key is a SQL statement's")
			require.Equal(t, uint64(1), d.Revision)
		})
	}
	d := decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "GET", Path: "/" + strings.Repeat("x", 5000)})
	require.Less(t, len(d.Reason), 400, "bounded")
	d = decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "GET", Path: "/chat", Websocket: true})
	require.Equal(t, "no rule allows GET /chat (WebSocket) on orders-api", d.Reason)
}

func TestDecideHTTPBody(t *testing.T) {
	e := compile(t, "orders-api",
		config.Rule{Name: "payments", Effect: "allow", When: `request.http.method == "POST" && request.http.path == "/payments"`},
		config.Rule{Name: "large-payments", Effect: "require_approval", When: `request.http.method == "POST" && request.http.body.amount > 1000`,
			Reason: "large payments need a second pair of eyes", Approval: &config.Approval{Approvers: []string{"finance"}}},
		config.Rule{Name: "no-refunds-to-self", Effect: "deny", When: `request.http.body != null && has(request.http.body.to) && request.http.body.to == identity.sub`, Reason: "not to yourself"},
		config.Rule{Name: "account", Effect: "deny", When: `request.http.body != null && has(request.http.body.account) && request.http.body.account == 9007199254740993`, Reason: "account closed"},
	)
	pay := func(body string) schemas.HTTPRequest {
		return schemas.HTTPRequest{Method: "POST", Path: "/payments", ContentType: "application/json", BodyBytes: int64(len(body)), Body: jsonBody(t, body)}
	}
	d := decideHTTP(t, e, nil, pay(`{"amount": 50, "to": "bob"}`))
	require.Equal(t, schemas.EffectAllow, d.Effect, d.Reason)
	d = decideHTTP(t, e, nil, pay(`{"amount": 1500.5, "to": "bob"}`))
	require.Equal(t, schemas.EffectRequireApproval, d.Effect, d.Reason)
	require.Equal(t, "large-payments", d.Rule)
	require.Equal(t, []string{"finance"}, d.Approval.Approvers)
	d = decideHTTP(t, e, nil, pay(`{"amount": 5000, "to": "s"}`))
	require.Equal(t, "no-refunds-to-self", d.Rule, "deny wins")
	d = decideHTTP(t, e, nil, pay(`{"amount": 5, "account": 9007199254740993}`))
	require.Equal(t, "account", d.Rule, "numbers compare exactly past 2^53")
	d = decideHTTP(t, e, nil, pay(`{"amount": 5, "account": 9007199254740992}`))
	require.Equal(t, schemas.EffectAllow, d.Effect, d.Reason)
	d = decideHTTP(t, e, nil, pay(`{"amount": 5}`))
	require.Equal(t, schemas.EffectAllow, d.Effect, d.Reason)
	d = decideHTTP(t, e, nil, pay(`[1, 2]`))
	require.Equal(t, schemas.EffectDeny, d.Effect, "a deny rule that cannot be evaluated (has() on a list) denies")
	require.Contains(t, d.Reason, "rule could not be evaluated")

	// No body at all: the approval rule does not match.
	d = decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "POST", Path: "/payments"})
	require.Equal(t, schemas.EffectAllow, d.Effect, d.Reason)

	// A body the gateway did not read cannot dodge the approval: the rule that would have
	// decided on it refuses.
	for _, h := range []schemas.HTTPRequest{
		{Method: "POST", Path: "/payments", ContentType: "application/json", BodyBytes: 1 << 20, BodyUnread: true},
		{Method: "POST", Path: "/payments", ContentType: "application/json", BodyBytes: -1, BodyUnread: true},
		{Method: "POST", Path: "/payments", ContentType: "application/json", BodyBytes: 9, BodyUnread: true, BodyError: "unexpected end of JSON input"},
		{Method: "POST", Path: "/payments", ContentType: "text/plain", BodyBytes: 20},
	} {
		d := decideHTTP(t, e, nil, h)
		require.Equal(t, schemas.EffectDeny, d.Effect, "%+v", h)
		require.Equal(t, "large-payments", d.Rule)
		require.Contains(t, d.Reason, "rule p/large-payments decides on the request's body, and the ")
		require.Contains(t, d.Reason, "refusing (fail closed)")
	}
	d = decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "POST", Path: "/payments", ContentType: "text/plain", BodyBytes: 20})
	require.Contains(t, d.Reason, "the body (20 bytes) is text/plain, not JSON, and was not read")

	// A rule may decide on the body's absence itself.
	e = compile(t, "orders-api",
		config.Rule{Name: "payments", Effect: "allow", When: `request.http.path == "/payments" && !request.http.body_unread && request.http.body_error == ""`},
		config.Rule{Name: "large", Effect: "require_approval", When: `request.http.path == "/payments" && (request.http.body_unread || request.http.body != null && request.http.body.amount > 1000)`},
	)
	d = decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "POST", Path: "/payments", BodyBytes: -1, BodyUnread: true})
	require.Equal(t, schemas.EffectRequireApproval, d.Effect, d.Reason)
	d = decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "GET", Path: "/payments"})
	require.Equal(t, schemas.EffectAllow, d.Effect, d.Reason)
	d = decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "POST", Path: "/elsewhere", BodyBytes: 1 << 20, BodyUnread: true})
	require.Equal(t, "no rule allows POST /elsewhere on orders-api (the JSON body (1048576 bytes) is over what the gateway reads for a decision)", d.Reason)
}

func TestDecideHTTPMaskFields(t *testing.T) {
	e := compile(t, "orders-api",
		config.Rule{Name: "read", Effect: "allow", When: `request.http.method == "GET"`},
		config.Rule{Name: "cards", Effect: "mask", When: `true`, Mask: &config.Mask{Fields: []string{"$.customers[*].card_number", "$..iban"}, Method: "partial"}},
		config.Rule{Name: "emails", Effect: "mask", When: `!("support" in identity.groups)`, Mask: &config.Mask{Fields: []string{"$..email", "$..iban"}, Detectors: []string{"email"}}},
		config.Rule{Name: "sql-columns", Effect: "mask", When: `true`, Mask: &config.Mask{Columns: []string{"customers.card_number"}}},
	)
	d := decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "GET", Path: "/customers"})
	require.Equal(t, schemas.EffectMask, d.Effect, d.Reason)
	require.Equal(t, "read", d.Rule)
	require.Equal(t, []schemas.MaskField{
		{Path: "$.customers[*].card_number", Method: "partial", Rule: "p/cards"},
		{Path: "$..iban", Method: "partial", Rule: "p/cards"},
		{Path: "$..email", Method: "redact", Rule: "p/emails"},
	}, d.Mask.Fields, "merged from both rules; a path masked twice keeps its first method")
	require.Equal(t, []schemas.MaskDetector{{Name: "email", Method: "redact"}}, d.Mask.Detectors)
	require.Empty(t, d.Mask.Columns, "columns are SQL's")
	require.False(t, d.Mask.KubeSecrets)
	require.Equal(t, "rule read matched; masked by p/cards, p/emails", d.Reason)

	d = decideHTTP(t, e, []string{"support"}, schemas.HTTPRequest{Method: "GET", Path: "/customers"})
	require.Equal(t, []schemas.MaskField{{Path: "$.customers[*].card_number", Method: "partial", Rule: "p/cards"}, {Path: "$..iban", Method: "partial", Rule: "p/cards"}}, d.Mask.Fields)
	require.Empty(t, d.Mask.Detectors)

	// A mask rule with columns only masks nothing on HTTP; fields mean nothing on SQL and SSH.
	e = compile(t, "*",
		config.Rule{Name: "all", Effect: "allow", When: `true`},
		config.Rule{Name: "sql-columns", Effect: "mask", When: `true`, Mask: &config.Mask{Columns: []string{"customers.card_number"}}},
		config.Rule{Name: "http-fields", Effect: "mask", When: `true`, Mask: &config.Mask{Fields: []string{"$..card_number"}}},
	)
	d = decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "GET", Path: "/"})
	require.Equal(t, schemas.EffectMask, d.Effect)
	require.Equal(t, "rule all matched; masked by p/http-fields", d.Reason)
	require.Empty(t, d.Mask.Columns)
	d = e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Resource: schemas.Resource{Name: "demo", Type: "postgres"},
		SQL: &schemas.SQLRequest{Text: "select name from customers"}}, Catalog: testCatalog}, time.Now())
	require.Equal(t, schemas.EffectMask, d.Effect, d.Reason)
	require.NotContains(t, d.Reason, "http-fields")
	require.Empty(t, d.Mask.Fields)
	d = decideSSH(t, e, nil, exec("ls"))
	require.Equal(t, schemas.EffectAllow, d.Effect, "neither columns nor fields mask a terminal: %s", d.Reason)
}

func TestDecideHTTPRulesOfOtherProtocolsSkipped(t *testing.T) {
	e, err := policy.Compile([]config.Policy{
		{Name: "baseline", Resources: []string{"*"}, Rules: []config.Rule{
			{Name: "no-drop", Effect: "deny", When: `"drop_table" in request.sql.kinds`, Reason: "no drops"},
			{Name: "no-rm", Effect: "deny", When: `"rm" in request.ssh.programs`, Reason: "no rm"},
			{Name: "no-secrets", Effect: "deny", When: `request.kube.resource == "secrets" && request.kube.verb == "delete"`, Reason: "keep secrets"},
			{Name: "no-deletes", Effect: "deny", When: `request.http.method == "DELETE" && "prod" in resource.labels`, Reason: "no deletes in prod"},
			{Name: "no-interns", Effect: "deny", When: `"interns" in identity.groups`, Reason: "interns never"},
			{Name: "kind", Effect: "deny", When: `request.kind == "kube" && request.kube.namespace == "kube-system"`, Reason: "not kube-system"},
		}},
		{Name: "all", Resources: []string{"orders-api", "k8s"}, Rules: []config.Rule{
			{Name: "ops", Effect: "allow", When: `"ops" in identity.groups`},
		}},
	}, 1)
	require.NoError(t, err)
	d := decideHTTP(t, e, []string{"ops"}, schemas.HTTPRequest{Method: "DELETE", Path: "/x"})
	require.Equal(t, schemas.EffectAllow, d.Effect, "neither the SQL, the SSH nor the kube rule is evaluated: %s", d.Reason)
	require.Equal(t, "no-interns", decideHTTP(t, e, []string{"ops", "interns"}, schemas.HTTPRequest{Method: "GET", Path: "/"}).Rule)
	d = e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Groups: []string{"ops"}},
		Resource: schemas.Resource{Name: "orders-api", Type: "http", Labels: map[string]string{"prod": "yes"}}, HTTP: &schemas.HTTPRequest{Method: "DELETE", Path: "/x"}}}, time.Now())
	require.Equal(t, "no-deletes", d.Rule)

	// A Kubernetes request is an HTTP request too: http rules apply, kube rules apply.
	d = decideKube(t, e, []string{"ops"}, kubeReq("delete", "pods", "default", "web-1"))
	require.Equal(t, schemas.EffectAllow, d.Effect, d.Reason)
	d = decideKube(t, e, []string{"ops"}, kubeReq("delete", "secrets", "default", "db"))
	require.Equal(t, "no-secrets", d.Rule)
	d = decideKube(t, e, []string{"ops"}, kubeReq("get", "pods", "kube-system", ""))
	require.Equal(t, "kind", d.Rule)
	d = e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Groups: []string{"ops"}},
		Resource: schemas.Resource{Name: "k8s", Type: "kubernetes", Labels: map[string]string{"prod": "yes"}},
		HTTP:     &schemas.HTTPRequest{Method: "DELETE", Path: "/api/v1/namespaces/default/pods/web-1"}, Kube: &schemas.KubeRequest{Verb: "delete", ResourceRequest: true, Resource: "pods", Namespace: "default", Name: "web-1"}}}, time.Now())
	require.Equal(t, "no-deletes", d.Rule)

	// SQL and SSH requests are not decided by HTTP and kube rules.
	d = decideSSH(t, e, []string{"ops"}, exec("ls"))
	require.Equal(t, schemas.EffectDeny, d.Effect, "web-1 is in no policy but the baseline")
	require.Empty(t, d.Rule, d.Reason)
}

func TestDecideProtocolMustMatchTheResource(t *testing.T) {
	e := compile(t, "*", config.Rule{Name: "all", Effect: "allow", When: `true`})
	h := &schemas.HTTPRequest{Method: "GET", Path: "/"}
	k := &schemas.KubeRequest{Verb: "list", ResourceRequest: true, Resource: "pods"}
	for _, tc := range []struct {
		name   string
		req    schemas.DecisionRequest
		reason string
	}{
		{"http for postgres", schemas.DecisionRequest{Resource: schemas.Resource{Name: "demo", Type: "postgres"}, HTTP: h},
			`resource "demo" is of type "postgres", and the request is an HTTP request, for a resource of type http; refusing (fail closed)`},
		{"http for kubernetes", schemas.DecisionRequest{Resource: schemas.Resource{Name: "k8s", Type: "kubernetes"}, HTTP: h},
			`resource "k8s" is of type "kubernetes", and the request is an HTTP request, for a resource of type http`},
		{"kube for http", schemas.DecisionRequest{Resource: schemas.Resource{Name: "api", Type: "http"}, HTTP: h, Kube: k},
			`is a Kubernetes API request, for a resource of type kubernetes`},
		{"http without type", schemas.DecisionRequest{Resource: schemas.Resource{Name: "api"}, HTTP: h}, `resource "api" has no type`},
		{"sql for http", schemas.DecisionRequest{Resource: schemas.Resource{Name: "api", Type: "http"}, SQL: &schemas.SQLRequest{Text: "select 1"}}, "is a SQL statement"},
		{"ssh for kubernetes", schemas.DecisionRequest{Resource: schemas.Resource{Name: "k8s", Type: "kubernetes"}, SSH: &schemas.SSHRequest{Request: "shell"}}, "is an SSH request"},
		{"kube without http", schemas.DecisionRequest{Resource: schemas.Resource{Name: "k8s", Type: "kubernetes"}, Kube: k}, "a kube part without its http part"},
		{"neither", schemas.DecisionRequest{Resource: schemas.Resource{Name: "k8s", Type: "kubernetes"}}, "no sql, ssh or http part"},
		{"two", schemas.DecisionRequest{Resource: schemas.Resource{Name: "k8s", Type: "kubernetes"}, SQL: &schemas.SQLRequest{Text: "select 1"}, HTTP: h, Kube: k}, "more than one protocol part (sql, http)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Decide(&policy.Input{DecisionRequest: tc.req, Catalog: testCatalog}, time.Now())
			require.Equal(t, schemas.EffectDeny, d.Effect)
			require.Equal(t, "gatehouse", d.Policy)
			require.Equal(t, "protocol", d.Rule)
			require.Contains(t, d.Reason, tc.reason)
		})
	}
	d := decideHTTP(t, e, nil, *h)
	require.Equal(t, schemas.EffectAllow, d.Effect, d.Reason)
}

func TestDecideHTTPInputsAreAlwaysPresent(t *testing.T) {
	// Every field exists on every request: a deny rule reading one never fails.
	for _, f := range []string{"method", "host", "path", "route", "content_type", "body_error"} {
		e := compile(t, "orders-api",
			config.Rule{Name: "all", Effect: "allow", When: `true`},
			config.Rule{Name: "check", Effect: "deny", When: `request.http.` + f + ` == "never"`},
			config.Rule{Name: "check-more", Effect: "deny", When: `request.http.params.size() + request.http.query.size() + request.http.headers.size() + request.http.segments.size() > 100 || request.http.body_bytes == 7 || request.http.body_unread && request.http.websocket || request.http.body == 1`},
			config.Rule{Name: "check-kind", Effect: "deny", When: `request.kind != "http"`},
		)
		require.Equal(t, schemas.EffectAllow, decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "GET", Path: "/"}).Effect, f)
	}
}

func TestDecideHTTPShadow(t *testing.T) {
	e, err := policy.Compile([]config.Policy{
		{Name: "live", Resources: []string{"orders-api"}, Rules: []config.Rule{{Name: "all", Effect: "allow", When: `true`}}},
		{Name: "trial", Shadow: true, Resources: []string{"orders-api"}, Rules: []config.Rule{{Name: "no-delete", Effect: "deny", When: `request.http.method == "DELETE"`, Reason: "soon"}}},
	}, 1)
	require.NoError(t, err)
	d := decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "DELETE", Path: "/x"})
	require.Equal(t, schemas.EffectAllow, d.Effect)
	require.Equal(t, &schemas.Shadow{Effect: "deny", Policy: "trial", Rule: "no-delete", Reason: "soon"}, d.Shadow)
	require.Nil(t, decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "GET", Path: "/x"}).Shadow)
}

func TestDecideHTTPOneMeaning(t *testing.T) {
	e := compile(t, "orders-api",
		config.Rule{Name: "all", Effect: "allow", When: `true`},
		config.Rule{Name: "no-admin", Effect: "deny", When: `request.http.path.startsWith("/admin/")`},
		config.Rule{Name: "no-delete", Effect: "deny", When: `request.http.method == "DELETE"`},
	)
	for _, p := range []string{"", "admin/x", "/x/../admin/x", "/./admin/x", "//admin/x", "/x/..", "/a?b", "/a#b", "/a\x00b"} {
		d := decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "GET", Path: p})
		require.Equal(t, schemas.EffectDeny, d.Effect, p)
		require.Equal(t, "one-meaning", d.Rule, p)
		require.Contains(t, d.Reason, "is not normalised", p)
	}
	require.Equal(t, schemas.EffectAllow, decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "GET", Path: "/a/b/"}).Effect)
	require.Equal(t, schemas.EffectAllow, decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "GET", Path: "/a/..b/.c"}).Effect)
	d := decideHTTP(t, e, nil, schemas.HTTPRequest{Method: "delete", Path: "/x"})
	require.Equal(t, "no-delete", d.Rule, "methods are compared upper case")
}

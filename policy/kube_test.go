package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
)

func decideKube(t *testing.T, e *policy.Engine, groups []string, k schemas.KubeRequest) schemas.DecisionReply {
	t.Helper()
	h := schemas.HTTPRequest{Method: "GET", Path: kubePath(k)}
	switch k.Verb {
	case "create":
		h.Method = "POST"
	case "delete", "deletecollection":
		h.Method = "DELETE"
	case "update":
		h.Method = "PUT"
	case "patch":
		h.Method = "PATCH"
	}
	return e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Groups: groups},
		Resource: schemas.Resource{Name: "k8s", Type: "kubernetes"}, HTTP: &h, Kube: &k}}, time.Now())
}

func kubePath(k schemas.KubeRequest) string {
	if !k.ResourceRequest {
		return "/healthz"
	}
	p := "/api/v1"
	if k.ApiGroup != "" {
		p = "/apis/" + k.ApiGroup + "/v1"
	}
	if k.Namespace != "" {
		p += "/namespaces/" + k.Namespace
	}
	p += "/" + k.Resource
	if k.Name != "" {
		p += "/" + k.Name
	}
	if k.Subresource != "" {
		p += "/" + k.Subresource
	}
	return p
}

func kubeReq(verb, resource, namespace, name string) schemas.KubeRequest {
	return schemas.KubeRequest{Verb: verb, ResourceRequest: true, ApiVersion: "v1", Resource: resource, Namespace: namespace, Name: name}
}

func execReq(namespace, pod string, command ...string) schemas.KubeRequest {
	k := kubeReq("create", "pods", namespace, pod)
	k.Subresource, k.Command, k.Container, k.Stdin, k.Tty = "exec", command, "app", true, true
	return k
}

func TestDecideKubeVerbsAndResources(t *testing.T) {
	e := compile(t, "k8s",
		config.Rule{Name: "devs-read", Effect: "allow", When: `"devs" in identity.groups && request.kube.verb in ["get", "list", "watch"] && request.kube.resource_request`},
		config.Rule{Name: "devs-deploy", Effect: "allow", When: `"devs" in identity.groups && request.kube.api_group == "apps" && request.kube.resource == "deployments" && request.kube.verb in ["update", "patch"] && request.kube.namespace == "staging"`},
		config.Rule{Name: "health", Effect: "allow", When: `!request.kube.resource_request && request.kube.verb == "get" && request.http.path in ["/healthz", "/version"]`},
		config.Rule{Name: "not-kube-system", Effect: "deny", When: `request.kube.namespace == "kube-system" && !("admins" in identity.groups)`, Reason: "kube-system is the platform team's"},
		config.Rule{Name: "prod-deletes", Effect: "require_approval", When: `request.kube.verb in ["delete", "deletecollection"] && request.kube.namespace == "prod"`,
			Approval: &config.Approval{Approvers: []string{"leads"}}},
		config.Rule{Name: "admins", Effect: "allow", When: `"admins" in identity.groups`},
	)
	devs := []string{"devs"}
	deploy := kubeReq("patch", "deployments", "staging", "web")
	deploy.ApiGroup = "apps"
	for _, tc := range []struct {
		name   string
		groups []string
		req    schemas.KubeRequest
		effect string
		rule   string
		reason string
	}{
		{"list pods", devs, kubeReq("list", "pods", "staging", ""), "allow", "devs-read", ""},
		{"watch everywhere", devs, kubeReq("watch", "pods", "", ""), "allow", "devs-read", ""},
		{"delete a pod", devs, kubeReq("delete", "pods", "staging", "web-1"), "deny", "", "no rule allows delete of pods/web-1 in namespace staging on k8s"},
		{"patch a deployment", devs, deploy, "allow", "devs-deploy", ""},
		{"kube-system", devs, kubeReq("get", "pods", "kube-system", "dns"), "deny", "not-kube-system", "kube-system is the platform team's"},
		{"admins in kube-system", []string{"admins"}, kubeReq("delete", "pods", "kube-system", "dns"), "allow", "admins", ""},
		{"prod deletes need approval", []string{"admins"}, kubeReq("deletecollection", "pods", "prod", ""), "require_approval", "prod-deletes", ""},
		{"non-resource", nil, schemas.KubeRequest{Verb: "get"}, "allow", "health", ""},
		{"nodes", devs, kubeReq("delete", "nodes", "", "n1"), "deny", "", "no rule allows delete of nodes/n1 on k8s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decideKube(t, e, tc.groups, tc.req)
			require.Equal(t, tc.effect, d.Effect, d.Reason)
			require.Equal(t, tc.rule, d.Rule)
			require.Contains(t, d.Reason, tc.reason)
			require.False(t, d.Cacheable)
		})
	}
	d := decideKube(t, e, devs, schemas.KubeRequest{Verb: "post"})
	require.Equal(t, "no rule allows post of /healthz on k8s", d.Reason)
	deploy.Namespace = "prod"
	d = decideKube(t, e, devs, deploy)
	require.Equal(t, "no rule allows patch of deployments.apps/web in namespace prod on k8s", d.Reason)
}

func TestDecideKubeExec(t *testing.T) {
	e := compile(t, "k8s",
		config.Rule{Name: "read", Effect: "allow", When: `request.kube.verb in ["get", "list", "watch"]`},
		config.Rule{Name: "pods", Effect: "allow", When: `"devs" in identity.groups && request.kube.resource == "pods"`},
		config.Rule{Name: "exec-tools", Effect: "allow", When: `"oncall" in identity.groups && request.kube.subresource == "exec" && !request.kube.dynamic && request.kube.programs.all(p, p in ["ls", "cat", "env"])`},
		config.Rule{Name: "no-shells", Effect: "deny", When: `request.kube.subresource == "exec" && request.kube.command.size() > 0 && request.kube.command[0] in ["sh", "bash", "/bin/sh"]`, Reason: "no shells in pods"},
		config.Rule{Name: "logs", Effect: "allow", When: `request.kube.subresource == "log"`},
	)
	oncall := []string{"oncall"}
	d := decideKube(t, e, oncall, execReq("prod", "web-1", "ls", "-la", "/srv"))
	require.Equal(t, schemas.EffectAllow, d.Effect, d.Reason)
	require.Equal(t, "exec-tools", d.Rule)
	d = decideKube(t, e, oncall, execReq("prod", "web-1", "sh", "-c", "ls"))
	require.Equal(t, "no-shells", d.Rule)
	require.Equal(t, "no shells in pods", d.Reason)
	// The command's words are what runs; what a script in them runs counts too.
	d = decideKube(t, e, oncall, execReq("prod", "web-1", "env", "sh", "-c", "rm -rf /"))
	require.Equal(t, schemas.EffectDeny, d.Effect, "%s %s", d.Rule, d.Reason)
	require.Equal(t, `no rule allows create of pods/web-1/exec (command "env sh -c 'rm -rf /'") in namespace prod on k8s`, d.Reason)
	d = decideKube(t, e, oncall, execReq("prod", "web-1", "cat", "$(rm x)", "a;rm b"))
	require.Equal(t, schemas.EffectAllow, d.Effect, "words are not a shell's: %s", d.Reason)
	d = decideKube(t, e, oncall, execReq("prod", "web-1", "ls", "a\x00b"))
	require.Equal(t, schemas.EffectDeny, d.Effect)
	require.Equal(t, "command-depth", d.Rule)
	d = decideKube(t, e, oncall, execReq("prod", "web-1"))
	require.Equal(t, schemas.EffectDeny, d.Effect, "no programs are not all allowed ones")
	require.Equal(t, "command-depth", d.Rule)
	require.Contains(t, d.Reason, "an exec without a command")
	d = decideKube(t, e, oncall, execReq("prod", "web-1", "bash", "-c", strings.Repeat("sudo ", 20)+"ls"))
	require.Equal(t, "command-depth", d.Rule)
	require.Contains(t, d.Reason, "too deeply nested")

	// Rules for objects do not open sessions in pods: the verb of exec, attach and
	// portforward is create whatever the method, and only a rule naming the subresource
	// allows one.
	ws := execReq("prod", "web-1", "ls")
	ws.Verb = "get" // a WebSocket upgrade
	d = decideKube(t, e, nil, ws)
	require.Equal(t, schemas.EffectDeny, d.Effect, d.Reason)
	require.Empty(t, d.Rule)
	require.Contains(t, d.Reason, "no rule allows create of pods/web-1/exec")
	d = decideKube(t, e, []string{"devs"}, execReq("prod", "web-1", "ls"))
	require.Equal(t, schemas.EffectDeny, d.Effect, d.Reason)
	require.Equal(t, "kube-subresource", d.Rule)
	require.Contains(t, d.Reason, "rule p/pods allows create of pods/web-1/exec (command ls) in namespace prod, but exec, attach, portforward, proxy, ephemeralcontainers are allowed only by a rule that names request.kube.subresource")

	pf := kubeReq("create", "pods", "prod", "db-0")
	pf.Subresource, pf.Ports = "portforward", []string{"5432"}
	for _, groups := range [][]string{nil, {"devs"}, {"oncall"}} {
		d = decideKube(t, e, groups, pf)
		require.Equal(t, schemas.EffectDeny, d.Effect, "%v: %s", groups, d.Reason)
	}
	pf.Verb = "get"
	d = decideKube(t, e, []string{"devs"}, pf)
	require.Equal(t, schemas.EffectDeny, d.Effect, d.Reason)
	require.Contains(t, d.Reason, "create of pods/db-0/portforward (ports 5432)")

	e = compile(t, "k8s",
		config.Rule{Name: "db-tunnel", Effect: "allow", When: `request.kube.subresource == "portforward" && request.kube.name.startsWith("db-") && request.kube.ports.all(p, p == "5432")`},
		config.Rule{Name: "admins", Effect: "allow", When: `"admins" in identity.groups`},
		config.Rule{Name: "admin-sessions", Effect: "allow", When: `"admins" in identity.groups && request.kube.subresource in ["exec", "attach"]`},
	)
	require.Equal(t, "db-tunnel", decideKube(t, e, nil, pf).Rule)
	pf.Ports = []string{"5432", "22"}
	require.Equal(t, schemas.EffectDeny, decideKube(t, e, nil, pf).Effect)
	d = decideKube(t, e, []string{"admins"}, execReq("prod", "web-1", "bash"))
	require.Equal(t, schemas.EffectAllow, d.Effect, d.Reason)
	require.Equal(t, "kube-subresource", decideKube(t, e, []string{"admins"}, pf).Rule, "admins get no tunnels: no admin rule names portforward's subresource and matches")
	nodeProxy := kubeReq("get", "nodes", "", "n1")
	nodeProxy.Subresource = "proxy"
	require.Equal(t, "kube-subresource", decideKube(t, e, []string{"admins"}, nodeProxy).Rule)
}

func TestDecideKubeSecrets(t *testing.T) {
	everything := config.Rule{Name: "everything", Effect: "allow", When: `true`}
	e := compile(t, "k8s", everything)
	for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"} {
		d := decideKube(t, e, nil, kubeReq(verb, "secrets", "prod", ""))
		require.Equal(t, schemas.EffectMask, d.Effect, "%s: a plain allow for everything does not reveal Secrets: %s", verb, d.Reason)
		require.True(t, d.Mask.KubeSecrets, verb)
		require.Equal(t, "rule everything matched; Secret data masked (no matching allow rule has reveal: [secrets])", d.Reason)
		require.True(t, d.Allowed())
	}
	d := decideKube(t, e, nil, kubeReq("get", "configmaps", "prod", "x"))
	require.Equal(t, schemas.EffectAllow, d.Effect)
	require.Nil(t, d.Mask)
	d = decideKube(t, e, nil, schemas.KubeRequest{Verb: "get"})
	require.Equal(t, schemas.EffectAllow, d.Effect, "a non-resource path returns no Secrets")

	e = compile(t, "k8s", everything,
		config.Rule{Name: "ops-secrets", Effect: "allow", When: `"ops" in identity.groups && request.kube.namespace == "staging"`, Reveal: []string{"secrets"}},
		config.Rule{Name: "fields", Effect: "mask", When: `true`, Mask: &config.Mask{Fields: []string{"$.metadata.annotations"}}},
		config.Rule{Name: "prod-secret-writes", Effect: "require_approval", When: `request.kube.resource == "secrets" && request.kube.verb in ["update", "patch"] && request.kube.namespace == "prod"`,
			Approval: &config.Approval{Approvers: []string{"leads"}}},
		config.Rule{Name: "no-deletes", Effect: "deny", When: `request.kube.resource == "secrets" && request.kube.verb == "delete"`, Reason: "no"},
	)
	d = decideKube(t, e, []string{"ops"}, kubeReq("get", "secrets", "staging", "db"))
	require.Equal(t, schemas.EffectMask, d.Effect, d.Reason)
	require.False(t, d.Mask.KubeSecrets, "the reveal rule matched")
	require.Equal(t, []schemas.MaskField{{Path: "$.metadata.annotations", Method: "redact", Rule: "p/fields"}}, d.Mask.Fields)
	d = decideKube(t, e, []string{"ops"}, kubeReq("get", "secrets", "prod", "db"))
	require.True(t, d.Mask.KubeSecrets, "the reveal rule did not match")
	require.Len(t, d.Mask.Fields, 1)
	require.Contains(t, d.Reason, "masked by p/fields; Secret data masked")
	d = decideKube(t, e, nil, kubeReq("get", "secrets", "staging", "db"))
	require.True(t, d.Mask.KubeSecrets)

	d = decideKube(t, e, []string{"ops"}, kubeReq("patch", "secrets", "prod", "db"))
	require.Equal(t, schemas.EffectRequireApproval, d.Effect, "approval stays")
	require.True(t, d.Mask.KubeSecrets, "and what runs once approved is masked")
	d = decideKube(t, e, []string{"ops"}, kubeReq("delete", "secrets", "staging", "db"))
	require.Equal(t, schemas.EffectDeny, d.Effect, "deny stays")
	require.Equal(t, "no", d.Reason)
	require.Nil(t, d.Mask)

	// A reveal rule in a shadow policy reveals nothing.
	e, err := policy.Compile([]config.Policy{
		{Name: "live", Resources: []string{"k8s"}, Rules: []config.Rule{everything}},
		{Name: "trial", Shadow: true, Resources: []string{"k8s"}, Rules: []config.Rule{{Name: "reveal", Effect: "allow", When: `true`, Reveal: []string{"secrets"}}}},
	}, 1)
	require.NoError(t, err)
	d = decideKube(t, e, nil, kubeReq("get", "secrets", "staging", "db"))
	require.True(t, d.Mask.KubeSecrets)
}

func TestDecideKubeInputsAreAlwaysPresent(t *testing.T) {
	for _, f := range []string{"verb", "api_group", "api_version", "resource", "subresource", "namespace", "name", "container", "command_line"} {
		e := compile(t, "k8s",
			config.Rule{Name: "all", Effect: "allow", When: `true`},
			config.Rule{Name: "check", Effect: "deny", When: `request.kube.` + f + ` == "never"`},
			config.Rule{Name: "check-more", Effect: "deny", When: `request.kube.command.size() + request.kube.ports.size() + request.kube.programs.size() > 100 || request.kube.stdin && request.kube.tty && request.kube.dynamic || !request.kube.resource_request`},
			config.Rule{Name: "check-kind", Effect: "deny", When: `request.kind != "kube" || request.http.method == ""`},
		)
		require.Equal(t, schemas.EffectAllow, decideKube(t, e, nil, kubeReq("get", "pods", "", "")).Effect, f)
	}
	e := compile(t, "k8s", config.Rule{Name: "line", Effect: "allow", When: `request.kube.subresource == "exec" && request.kube.command_line == "psql -c 'select 1' ''"`})
	require.Equal(t, schemas.EffectAllow, decideKube(t, e, nil, execReq("db", "db-0", "psql", "-c", "select 1", "")).Effect)
}

func TestDecideKubeImpersonationRefused(t *testing.T) {
	e := compile(t, "k8s", config.Rule{Name: "all", Effect: "allow", When: `true`})
	k := kubeReq("get", "pods", "", "")
	k.Impersonate = "system:admin"
	d := decideKube(t, e, nil, k)
	require.Equal(t, schemas.EffectDeny, d.Effect)
	require.Equal(t, "impersonation", d.Rule)
	require.True(t, strings.Contains(d.Reason, "system:admin"), d.Reason)
}

// Kubernetes decisions: the CEL inputs of a request to the Kubernetes API (request.kube,
// beside request.http), what a rule must say to allow a session in a pod, and the masking
// of Secret objects unless an allow rule reveals them.

package policy

import (
	"fmt"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	exprpb "google.golang.org/genproto/googleapis/api/expr/v1alpha1"

	"github.com/gatehouse/gatehouse/schemas"
)

// connectSubresources open a session in a pod or on a node, or run a container: they are
// allowed only by an allow rule that names request.kube.subresource, so that a rule written
// for objects (`request.kube.resource == "pods"`, `"ops" in identity.groups`) does not hand
// out shells. Kubernetes' RBAC likewise counts pods/exec apart from pods.
var connectSubresources = []string{"exec", "attach", "portforward", "proxy", "ephemeralcontainers"}

// sessionSubresources are created whatever the method: a WebSocket upgrade is a GET, and
// the API server's request info then says get (Kubernetes authorises them as create).
var sessionSubresources = []string{"exec", "attach", "portforward"}

// kubeVerb is the verb rules see.
func kubeVerb(k *schemas.KubeRequest) string {
	if k.ResourceRequest && slices.Contains(sessionSubresources, k.Subresource) {
		return "create"
	}
	return k.Verb
}

// kubeValues is request.kube: every field present, empty when the request has none.
// info is the analysis of an exec's command line.
func kubeValues(k *schemas.KubeRequest, line string, info *ShellInfo) map[string]any {
	return map[string]any{
		"verb": kubeVerb(k), "resource_request": k.ResourceRequest, "api_group": k.ApiGroup, "api_version": k.ApiVersion,
		"resource": k.Resource, "subresource": k.Subresource, "namespace": k.Namespace, "name": k.Name,
		"command": nonNil(k.Command), "command_line": line, "programs": nonNil(info.Programs), "dynamic": info.Dynamic,
		"container": k.Container, "stdin": k.Stdin, "tty": k.Tty, "ports": nonNil(k.Ports),
	}
}

// commandLine is an exec's command as a shell line that parses back to exactly its words
// (the container runtime runs the words, no shell): each word quoted unless plain.
func commandLine(argv []string) string {
	var b strings.Builder
	for i, w := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
			b.WriteString(w)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(w, "'", `'\''`) + "'")
	}
	return b.String()
}

// kubeCommand analyses an exec's command as the SSH analysis does a command line (sh -c
// 'script' is read, wrappers are followed), or says why it is refused.
func kubeCommand(k *schemas.KubeRequest) (line string, info ShellInfo, refusal string) {
	info = ShellInfo{Programs: []string{}}
	if len(k.Command) == 0 {
		if k.ResourceRequest && k.Subresource == "exec" {
			// The API server refuses it too; rules would see no programs, and
			// programs.all(...) over none is true.
			return "", info, "an exec without a command (refusing, fail closed)"
		}
		return "", info, ""
	}
	line = commandLine(k.Command)
	if strings.ContainsRune(line, 0) {
		// No program gets such a word (exec takes C strings); what would run is not this.
		return line, info, "a word of the command holds a NUL byte (refusing, fail closed)"
	}
	info = AnalyzeShell(line)
	switch {
	case info.tooComplex:
		return line, info, "the command is not decided (refusing, fail closed): " + info.ParseError
	case info.ParseError != "":
		// The words, quoted, always parse; a word the shell cannot hold (a NUL byte)
		// is not one a container runs either.
		return line, info, "the command's words do not make a command line (refusing, fail closed): " + clip(info.ParseError, maxAsked)
	}
	return line, info, ""
}

// kubeAsked is what a Kubernetes request asks, for a message: "delete of pods/web-1 in
// namespace prod", "create of pods/web-1/exec (command "sh") in namespace prod", "get of
// /healthz".
func kubeAsked(k *schemas.KubeRequest, path string) string {
	verb := plain(kubeVerb(k), 32)
	if !k.ResourceRequest {
		return verb + " of " + plain(path, maxAsked)
	}
	obj := k.Resource
	if k.ApiGroup != "" {
		obj += "." + k.ApiGroup
	}
	if k.Name != "" {
		obj += "/" + k.Name
	}
	if k.Subresource != "" {
		obj += "/" + k.Subresource
	}
	asked := verb + " of " + plain(obj, maxAsked)
	if len(k.Command) > 0 {
		asked += " (command " + plain(commandLine(k.Command), maxAsked) + ")"
	}
	if len(k.Ports) > 0 {
		asked += " (ports " + plain(strings.Join(k.Ports, ","), 64) + ")"
	}
	if k.Namespace != "" {
		asked += " in namespace " + plain(k.Namespace, 64)
	}
	return asked
}

// isSecrets reports whether a request may return Secret objects.
func isSecrets(k *schemas.KubeRequest) bool {
	return k.ResourceRequest && strings.EqualFold(k.Resource, "secrets")
}

// kubeAfter applies to a decision what Kubernetes asks beyond the rules: a session in a pod
// needs a rule that names the subresource, and Secrets are masked unless a matching allow
// rule reveals them (an approval's decision carries the mask too, for what runs once it
// is approved).
func kubeAfter(m *match, d *schemas.DecisionReply, k *schemas.KubeRequest, path string) {
	if d.Allowed() && k.ResourceRequest && slices.Contains(connectSubresources, k.Subresource) &&
		!slices.ContainsFunc(m.allows, func(r *rule) bool { return r.namesSubresource }) {
		by := d.Policy + "/" + d.Rule
		d.Effect, d.Policy, d.Rule, d.Mask = schemas.EffectDeny, "gatehouse", "kube-subresource", nil
		d.Reason = fmt.Sprintf("rule %s allows %s, but %s are allowed only by a rule that names request.kube.subresource; refusing (fail closed)",
			by, kubeAsked(k, path), strings.Join(connectSubresources, ", "))
		return
	}
	if !isSecrets(k) || !(d.Allowed() || d.Effect == schemas.EffectRequireApproval) {
		return
	}
	if slices.ContainsFunc(m.allows, func(r *rule) bool { return r.revealSecrets }) {
		return
	}
	if d.Effect == schemas.EffectAllow {
		d.Effect = schemas.EffectMask
	}
	if d.Mask == nil {
		d.Mask = &schemas.MaskSpec{}
	}
	d.Mask.KubeSecrets = true
	d.Reason += "; Secret data masked (no matching allow rule has reveal: [secrets])"
}

// selectsField reports whether a rule selects a field of that name by name (x.name or
// x["name"]); unlike readsField, an index that cannot be seen through does not count.
func selectsField(ast *cel.Ast, name string) bool {
	checked, err := cel.AstToCheckedExpr(ast)
	if err != nil {
		return false
	}
	found := false
	var walk func(e *exprpb.Expr)
	walk = func(e *exprpb.Expr) {
		if e == nil || found {
			return
		}
		switch k := e.GetExprKind().(type) {
		case *exprpb.Expr_SelectExpr:
			found = k.SelectExpr.GetField() == name
		case *exprpb.Expr_CallExpr:
			if args := k.CallExpr.GetArgs(); k.CallExpr.GetFunction() == "_[_]" && len(args) == 2 {
				found = args[1].GetConstExpr().GetStringValue() == name
			}
		}
		for _, c := range celChildren(e) {
			walk(c)
		}
	}
	walk(checked.GetExpr())
	return found
}

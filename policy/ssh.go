// SSH decisions: the CEL inputs of an SSH request (request.ssh), the decision on a channel,
// a channel request or an sftp operation, its default denial, and which protocol parts of
// a request a rule reads. What an exec command runs is analysed in shell.go.

package policy

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	exprpb "google.golang.org/genproto/googleapis/api/expr/v1alpha1"

	"github.com/gatehouse/gatehouse/schemas"
)

// clip cuts s to at most n bytes on a UTF-8 boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// sshValues is request.ssh: every field present, empty when the request has none.
func sshValues(s *schemas.SSHRequest, info *ShellInfo) map[string]any {
	sftp := map[string]any{"op": "", "path": "", "target": ""}
	if s.SFTP != nil {
		sftp = map[string]any{"op": s.SFTP.Op, "path": cleanPath(s.SFTP.Path), "target": cleanPath(s.SFTP.Target)}
	}
	cmds := make([]any, 0, len(info.Commands))
	for _, c := range info.Commands {
		cmds = append(cmds, map[string]any{"program": c.Program, "name": c.Name, "args": nonNil(c.Args), "dynamic": c.Dynamic})
	}
	return map[string]any{
		"login": s.Login, "channel": s.Channel, "request": s.Request, "command": s.Command, "subsystem": s.Subsystem,
		"term": s.Term, "env": map[string]any{"name": s.EnvName, "value": s.EnvValue}, "host": s.Host, "port": int64(s.Port),
		"sftp": sftp, "commands": cmds, "programs": nonNil(info.Programs), "files_written": nonNil(info.FilesWritten),
		"files_read": nonNil(info.FilesRead), "has_substitution": info.HasSubstitution, "pipes": info.Pipes,
		"background": info.Background, "dynamic": info.Dynamic, "parse_error": info.ParseError,
	}
}

// cleanPath is an sftp path as the rules see it: /srv/../etc is /etc.
func cleanPath(p string) string {
	if p == "" {
		return ""
	}
	return path.Clean(p)
}

// decideSSH decides a channel, a channel request or an sftp operation. An exec command is
// parsed first; one past the analysis' bounds is refused whatever the rules say.
func (e *Engine) decideSSH(req *Input, now time.Time) schemas.DecisionReply {
	s := req.SSH
	d := schemas.DecisionReply{Revision: e.revision}
	info := ShellInfo{}
	if s.Request == "exec" {
		info = AnalyzeShell(s.Command)
		if info.tooComplex {
			d.Effect, d.Policy, d.Rule = schemas.EffectDeny, "gatehouse", "command-depth"
			d.Reason = "the command is not decided (refusing, fail closed): " + info.ParseError
			return d
		}
	}
	vars := baseVars(req, now)
	vars["request"] = map[string]any{"kind": "ssh", "ssh": sshValues(s, &info), "agent": agentValues(req.Agent)}
	// Only content detectors mask a terminal's output: columns and fields mean nothing here.
	enforced, all, shadowSeen := e.evaluate(req.Resource.Name, vars, evalOptions{skip: func(r *rule) bool {
		return !r.reads.appliesTo(readsSSH) || info.ParseError != "" && !r.onParseError
	}})
	fill := func(m match, d *schemas.DecisionReply) {
		if m.best == nil {
			d.Effect, d.Reason = schemas.EffectDeny, sshDenial(s, &info, req.Resource.Name)
			return
		}
		m.fill(d, nil, req.Resource.Name)
	}
	fill(enforced, &d)
	if d.Allowed() {
		for _, g := range req.Grants {
			d.Grants = append(d.Grants, g.ID)
		}
	}
	if shadowSeen {
		var would schemas.DecisionReply
		fill(all, &would)
		if would.Effect != d.Effect || would.Rule != d.Rule || would.Policy != d.Policy {
			d.Shadow = &schemas.Shadow{Effect: would.Effect, Policy: would.Policy, Rule: would.Rule, Reason: would.Reason}
		}
	}
	return d
}

// maxAsked bounds what a denial quotes of the request.
const maxAsked = 200

// sshDenial is the default denial: what was asked, by which login on which resource.
func sshDenial(s *schemas.SSHRequest, info *ShellInfo, resource string) string {
	q := func(v string) string { return strconv.Quote(clip(v, maxAsked)) }
	var asked string
	switch s.Request {
	case "exec":
		asked = "exec of " + q(s.Command)
		if len(info.Programs) > 0 {
			names := make([]string, 0, maxNamed)
			for i, p := range info.Programs {
				if i == maxNamed {
					names = append(names, fmt.Sprintf("and %d more", len(info.Programs)-maxNamed))
					break
				}
				names = append(names, clip(p, 64))
			}
			asked += " (programs " + strings.Join(names, ", ") + ")"
		}
		if info.ParseError != "" {
			asked += ", which does not parse: " + clip(info.ParseError, maxAsked)
		}
	case "subsystem":
		asked = "subsystem " + q(s.Subsystem)
	case "env":
		asked = "env " + q(s.EnvName)
	case "sftp":
		if s.SFTP != nil {
			asked = "sftp " + q(s.SFTP.Op) + " of " + q(cleanPath(s.SFTP.Path))
			if s.SFTP.Target != "" {
				asked += " to " + q(cleanPath(s.SFTP.Target))
			}
		} else {
			asked = "sftp"
		}
	case "open", "tcpip-forward":
		asked = s.Request + " of a " + q(s.Channel) + " channel"
		if s.Host != "" || s.Port != 0 {
			asked += " to " + q(s.Host+":"+strconv.FormatUint(uint64(s.Port), 10))
		}
	default:
		asked = q(s.Request)
		if s.Request != "" && strconv.Quote(s.Request) == `"`+s.Request+`"` && len(s.Request) <= 64 {
			asked = s.Request
		}
	}
	login := strconv.Quote(clip(s.Login, 64))
	if login == `"`+s.Login+`"` && s.Login != "" {
		login = s.Login
	}
	return fmt.Sprintf("no rule allows %s for %s@%s", asked, login, resource)
}

// protoParts are the protocol parts of a request a rule reads.
type protoParts uint8

const (
	readsSQL  protoParts = 1 << iota // request.sql
	readsSSH                         // request.ssh
	readsHTTP                        // request.http
	readsKube                        // request.kube

	readsAll = readsSQL | readsSSH | readsHTTP | readsKube
)

// appliesTo reports whether a rule reading p is evaluated on a request with the parts
// present: it reads none of the protocol parts (identity, resource, request.kind), or one
// the request has. A Kubernetes request has its http part too.
func (p protoParts) appliesTo(present protoParts) bool { return p == 0 || p&present != 0 }

// requestParts says which protocol parts a rule reads. A rule that uses request otherwise
// than by a constant field (request[k], request.all(...)) reads them all; a rule that reads
// none (identity, resource, request.kind) applies to every request of its resources.
func requestParts(ast *cel.Ast) protoParts {
	all := readsAll
	checked, err := cel.AstToCheckedExpr(ast)
	if err != nil {
		return all
	}
	part := func(name string) protoParts {
		switch name {
		case "sql":
			return readsSQL
		case "ssh":
			return readsSSH
		case "http":
			return readsHTTP
		case "kube":
			return readsKube
		}
		return 0
	}
	isRequest := func(e *exprpb.Expr) bool { return e.GetIdentExpr().GetName() == "request" }
	var parts protoParts
	var walk func(e *exprpb.Expr)
	walk = func(e *exprpb.Expr) {
		if e == nil {
			return
		}
		switch k := e.GetExprKind().(type) {
		case *exprpb.Expr_IdentExpr:
			if isRequest(e) {
				parts |= all // request used whole
			}
		case *exprpb.Expr_SelectExpr:
			if isRequest(k.SelectExpr.GetOperand()) {
				parts |= part(k.SelectExpr.GetField())
				return
			}
		case *exprpb.Expr_CallExpr:
			args := k.CallExpr.GetArgs()
			if k.CallExpr.GetFunction() == "_[_]" && len(args) == 2 && isRequest(args[0]) {
				if c := args[1].GetConstExpr(); c != nil {
					parts |= part(c.GetStringValue())
				} else {
					parts |= all
				}
				walk(args[1])
				return
			}
		}
		for _, c := range celChildren(e) {
			walk(c)
		}
	}
	walk(checked.GetExpr())
	return parts
}

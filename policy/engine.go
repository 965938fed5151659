// Package policy decides what a caller may do with a request: CEL rules grouped in named
// policies per resource, evaluated against the caller's identity, the resource and what the
// request really does (SQL analysed with the PostgreSQL parser). Default deny; the most
// restrictive matching effect wins.
package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	exprpb "google.golang.org/genproto/googleapis/api/expr/v1alpha1"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
)

// effectRank orders the effects a rule decides by, least to most restrictive (a mask rule
// allows nothing by itself: it masks what another allows).
var effectRank = map[string]int{schemas.EffectAllow: 1, schemas.EffectRequireApproval: 3, schemas.EffectDeny: 4}

// maskSpecOf turns a rule's mask block into a spec, with qualified column names and the
// method on every item.
func maskSpecOf(m *config.Mask, rule string) *schemas.MaskSpec {
	if m == nil {
		return nil
	}
	method := m.Method
	if method == "" {
		method = "redact"
	}
	spec := &schemas.MaskSpec{}
	for _, c := range m.Columns {
		if strings.Count(c, ".") == 1 {
			c = "public." + c
		}
		spec.Columns = append(spec.Columns, schemas.MaskColumn{Column: c, Method: method, Rule: rule,
			AllowProbing: m.Probing == "allow", RefuseDerived: m.Derived == "refuse"})
	}
	for _, d := range m.Detectors {
		spec.Detectors = append(spec.Detectors, schemas.MaskDetector{Name: d, Method: method})
	}
	for _, re := range m.Regex {
		spec.Detectors = append(spec.Detectors, schemas.MaskDetector{Name: "regex", Pattern: re, Method: method})
	}
	for _, f := range m.Fields {
		spec.Fields = append(spec.Fields, schemas.MaskField{Path: f, Method: method, Rule: rule})
	}
	return spec
}

// mergeMask adds o's items to s (a column or a field masked twice keeps its first method).
func mergeMask(s, o *schemas.MaskSpec) {
	for _, c := range o.Columns {
		if !slices.ContainsFunc(s.Columns, func(x schemas.MaskColumn) bool { return x.Column == c.Column }) {
			s.Columns = append(s.Columns, c)
		}
	}
	for _, f := range o.Fields {
		if !slices.ContainsFunc(s.Fields, func(x schemas.MaskField) bool { return x.Path == f.Path }) {
			s.Fields = append(s.Fields, f)
		}
	}
	for _, d := range o.Detectors {
		if !slices.Contains(s.Detectors, d) {
			s.Detectors = append(s.Detectors, d)
		}
	}
}

// Input is what the engine decides on: the proxy's request, with what the policy service
// adds to it (never taken from the request).
type Input struct {
	schemas.DecisionRequest
	// Catalog is the resource's catalog.
	Catalog *Catalog
	// Grants are the caller's time-boxed grants on the resource.
	Grants []Grant

	// probing: this request asks whether the caller may read the catalog (for the reason
	// of a denial), and is not itself explained.
	probing bool
}

// Grant is what rules see of a grant (`grants`: id, role, resource, expires).
type Grant struct {
	ID       string    `json:"id"`
	Role     string    `json:"role"`
	Resource string    `json:"resource"`
	Expires  time.Time `json:"expires"`
}

// approvalSpecOf is a rule's approval, with defaults filled in.
func approvalSpecOf(a *config.Approval) *schemas.ApprovalSpec {
	if a == nil {
		return nil
	}
	s := &schemas.ApprovalSpec{Approvers: a.Approvers, Required: a.Required, Timeout: a.Timeout, Mode: a.Mode, Window: a.Window}
	if s.Required == 0 {
		s.Required = 1
	}
	if s.Timeout == 0 {
		s.Timeout = 5 * time.Minute
	}
	if s.Mode == "" {
		s.Mode = "hold"
	}
	if s.Mode == "fail_fast" && s.Window == 0 {
		s.Window = time.Hour
	}
	return s
}

type rule struct {
	policy, name, effect, reason string
	prg                          cel.Program
	// onParseError: the rule refers to request.sql.parse_error, so it may decide statements
	// that do not parse. Other rules never match those: `kinds.all(...)` over the empty
	// facts of an unparsable statement would otherwise be vacuously true.
	onParseError bool
	shadow       bool              // from a shadow policy: recorded, not enforced
	mask         *schemas.MaskSpec // effect mask
	approval     *schemas.ApprovalSpec

	// reads: the protocol parts of the request the rule reads (request.sql, request.ssh,
	// request.http, request.kube); a rule is not evaluated on a request that has none of
	// the parts it reads.
	reads protoParts
	// revealSecrets: an allow rule with reveal: [secrets] (Kubernetes Secret data passes).
	revealSecrets bool
	// readsBody: the rule may read request.http.body (a require_approval rule that cannot
	// be evaluated because the body was not parsed denies).
	readsBody bool
	// namesSubresource: the rule reads request.kube.subresource by name, so it may allow
	// exec, attach, portforward, proxy and ephemeral containers (see kube.go).
	namesSubresource bool
}

// Engine holds compiled rules. It is immutable; a policy change builds a new Engine.
type Engine struct {
	revision       uint64 // stamped on decisions: the policy revision, mixed with the grants generation
	policyRevision uint64
	byRes          map[string][]*rule // resource name → rules, "*" for every resource
	// uncacheable: resources with a rule whose outcome depends on more than the normalized
	// statement (its literal text, the time, or the token's claims).
	uncacheable map[string]bool
	needColumns bool // a rule reads request.sql.columns
}

// CompileError is a rule that does not compile, with its place in the config.
type CompileError struct {
	Path string // policies[i].rules[j].when
	Err  string // CEL's message, with line and column
}

func (e *CompileError) Error() string { return e.Path + ": " + e.Err }

func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("identity", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("resource", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("grants", cel.ListType(cel.DynType)),
		cel.Variable("now", cel.TimestampType),
	)
}

// Compile compiles every rule. Any error refuses the whole set: a policy is applied whole
// or not at all.
func Compile(policies []config.Policy, revision uint64) (*Engine, error) {
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("cel env: %w", err)
	}
	e := &Engine{revision: revision, policyRevision: revision, byRes: map[string][]*rule{}, uncacheable: map[string]bool{}}
	var errs []error
	for i, p := range policies {
		for j, r := range p.Rules {
			path := fmt.Sprintf("policies[%d].rules[%d].when", i, j)
			ast, iss := env.Compile(r.When)
			if iss.Err() != nil {
				errs = append(errs, &CompileError{Path: path, Err: fmt.Sprintf("policy %q rule %q: %s", p.Name, r.Name, iss.Err())})
				continue
			}
			if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
				errs = append(errs, &CompileError{Path: path, Err: fmt.Sprintf("policy %q rule %q: condition is %s, must be bool", p.Name, r.Name, ast.OutputType())})
				continue
			}
			prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
			if err != nil {
				errs = append(errs, &CompileError{Path: path, Err: err.Error()})
				continue
			}
			rl := &rule{policy: p.Name, name: r.Name, effect: r.Effect, reason: r.Reason, prg: prg, reads: requestParts(ast),
				onParseError: strings.Contains(r.When, "parse_error"), shadow: p.Shadow, mask: maskSpecOf(r.Mask, p.Name+"/"+r.Name), approval: approvalSpecOf(r.Approval),
				revealSecrets: r.Effect == schemas.EffectAllow && slices.Contains(r.Reveal, "secrets"),
				readsBody:     readsField(ast, "body"), namesSubresource: selectsField(ast, "subresource")}
			forSQL := rl.reads == 0 || rl.reads&readsSQL != 0
			varies := forSQL && (readsField(ast, "text", "claims") || readsVar(ast, "now"))
			e.needColumns = e.needColumns || forSQL && (readsField(ast, "columns") || readsField(ast, "filter_columns"))
			for _, res := range p.Resources {
				e.byRes[res] = append(e.byRes[res], rl)
				if varies {
					e.uncacheable[res] = true
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return e, nil
}

// RevisionOf derives a revision number from the policies' content, so that every process
// loading the same policies agrees on it and any change yields a new one (53 bits, exact in
// JSON numbers everywhere).
func RevisionOf(policies []config.Policy) uint64 {
	sorted := slices.Clone(policies)
	slices.SortStableFunc(sorted, func(a, b config.Policy) int { return strings.Compare(a.Name, b.Name) })
	b, _ := json.Marshal(sorted)
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8]) & (1<<53 - 1)
}

// Revision is the revision stamped on this engine's decisions.
func (e *Engine) Revision() uint64 { return e.revision }

// PolicyRevision is the revision of the policies the engine was compiled from.
func (e *Engine) PolicyRevision() uint64 { return e.policyRevision }

// WithGrantsGeneration returns the engine stamping decisions with its policy revision
// mixed with a grants generation: decisions depend on the caller's grants, so proxies must
// drop cached ones when grants change.
func (e *Engine) WithGrantsGeneration(gen uint64) *Engine {
	c := *e
	c.revision = e.policyRevision
	if gen != 0 {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], e.policyRevision)
		binary.BigEndian.PutUint64(b[8:], gen)
		sum := sha256.Sum256(b[:])
		c.revision = binary.BigEndian.Uint64(sum[:8]) & (1<<53 - 1)
	}
	return &c
}

func grantValues(gs []Grant) []any {
	out := make([]any, 0, len(gs))
	for _, g := range gs {
		out = append(out, map[string]any{"id": g.ID, "role": g.Role, "resource": g.Resource, "expires": g.Expires})
	}
	return out
}

// Decide evaluates every rule for the request's resource. Default deny; the most
// restrictive match wins; a deny rule that fails to evaluate (for instance a missing map
// key: write `"env" in resource.labels && ...`) denies (fail closed). A statement that does
// not parse is decided only by rules that refer to request.sql.parse_error. An SSH request
// is decided by decideSSH, an HTTP or Kubernetes one by decideHTTP; a rule that reads only
// other protocols' parts is not evaluated. A request without exactly one protocol, or
// whose protocol is not its resource's, is refused.
func (e *Engine) Decide(req *Input, now time.Time) schemas.DecisionReply {
	switch proto, refusal := protocolOf(&req.DecisionRequest); {
	case refusal != "":
		return schemas.DecisionReply{Revision: e.revision, Effect: schemas.EffectDeny, Policy: "gatehouse", Rule: "protocol", Reason: refusal}
	case proto == protoSSH:
		return e.decideSSH(req, now)
	case proto == protoHTTP || proto == protoKube:
		return e.decideHTTP(req, now)
	}
	sq := req.SQL
	if len(sq.Text) > schemas.MaxStatementBytes {
		return schemas.DecisionReply{Revision: e.revision, Effect: schemas.EffectDeny, Policy: "gatehouse", Rule: "statement-size", SQLState: "54000",
			Reason: fmt.Sprintf("the statement is %d bytes, over the %d bytes the policy analyses; refusing (fail closed): send it in smaller statements", len(sq.Text), schemas.MaxStatementBytes)}
	}
	info := Analyze(sq.Text, AnalyzeOptions{Columns: e.needColumns, Catalog: req.Catalog, SchemaChanged: sq.SchemaChanged})
	if info.tooComplex {
		return schemas.DecisionReply{Revision: e.revision, Effect: schemas.EffectDeny, Policy: "gatehouse", Rule: "statement-depth", SQLState: "54001", Reason: info.ParseError}
	}
	d := schemas.DecisionReply{Revision: e.revision, Fingerprint: info.Fingerprint, Kinds: info.Kinds, Tables: info.Tables, DDL: info.DDL,
		// A parse error's message and position depend on the literals the proxy's cache key
		// leaves out, so it is decided anew each time.
		Cacheable: !e.uncacheable[req.Resource.Name] && !e.uncacheable["*"] && info.ParseError == ""}
	if lin := info.Lineage; lin != nil {
		d.Code = len(lin.Code) > 0
		// ORDER BY 2 and ORDER BY 1 share a normalized text, and so do set_config's
		// settings: such a decision is not shared.
		d.Cacheable = d.Cacheable && !lin.LiteralDependent
		if lin.Refusal != "" {
			d.Effect, d.Policy, d.Rule, d.Reason = schemas.EffectDeny, "gatehouse", "one-meaning", lin.Refusal
			return d
		}
	} else if req.Catalog == nil && info.ParseError == "" && info.Statements > 0 {
		// Without the catalog nothing can be resolved: not a table behind a view, not a
		// masked column behind an alias, not a write behind a function.
		d.Effect, d.Policy, d.Rule = schemas.EffectDeny, "gatehouse", "no-catalog"
		d.Reason = fmt.Sprintf("the gateway has not read the catalog of resource %s yet (refusing, fail closed); it reads it from the database when a session starts", req.Resource.Name)
		d.Cacheable = false
		return d
	}
	vars := baseVars(req, now)
	vars["request"] = map[string]any{"kind": "sql", "sql": map[string]any{
		"text": info.Text, "kinds": info.Kinds, "tables": info.Tables, "tables_read": info.TablesRead,
		"tables_written": info.TablesWritten, "functions": info.Functions, "has_where": info.HasWhere,
		"columns": info.Columns, "filter_columns": info.FilterColumns, "writing_functions": info.WritingFuncs, "ddl": info.DDL,
		"statements": int64(info.Statements), "fingerprint": info.Fingerprint, "parse_error": info.ParseError,
		"writes": writeValues(info.Writes), "unknown_writes": info.UnknownWrites, "read_only": info.ReadOnly,
		"unresolved": info.Unresolved,
	}, "agent": agentValues(req.Agent)}
	enforced, all, shadowSeen := e.evaluate(req.Resource.Name, vars, evalOptions{use: maskUse{columns: true}, skip: func(r *rule) bool {
		return !r.reads.appliesTo(readsSQL) || info.ParseError != "" && !r.onParseError
	}})
	enforced.fill(&d, &info, req.Resource.Name)
	if enforced.best == nil && info.ParseError == "" && !req.probing {
		d.Reason += e.lookedAt(req, &info, now)
	}
	if d.Effect == schemas.EffectMask && d.Mask != nil && len(d.Mask.Columns) > 0 {
		planMask(&d, &info, req.Catalog)
	}
	if d.Allowed() {
		for _, g := range req.Grants {
			d.Grants = append(d.Grants, g.ID)
		}
	}
	if shadowSeen {
		var would schemas.DecisionReply
		all.fill(&would, &info, req.Resource.Name)
		if would.Effect != d.Effect || would.Rule != d.Rule || would.Policy != d.Policy {
			d.Shadow = &schemas.Shadow{Effect: would.Effect, Policy: would.Policy, Rule: would.Rule, Reason: would.Reason}
		}
	}
	return d
}

// baseVars are the inputs of every request but request itself.
func baseVars(req *Input, now time.Time) map[string]any {
	return map[string]any{
		"identity": map[string]any{
			"sub": req.Identity.Subject, "name": req.Identity.Name, "issuer": req.Identity.Issuer, "groups": nonNil(req.Identity.Groups),
			"kind": req.Identity.Kind, "on_behalf_of": req.Identity.OnBehalfOf, "claims": claims(req.Claims),
		},
		"resource": map[string]any{"name": req.Resource.Name, "type": req.Resource.Type, "labels": labels(req.Resource.Labels)},
		"grants":   grantValues(req.Grants),
		"now":      now,
	}
}

// agentValues are request.agent: the MCP tool call a request belongs to, every field ""
// when it does not come from the gateway's MCP server (so that a rule reading them works on
// every request, on every protocol).
func agentValues(a *schemas.AgentRequest) map[string]any {
	if a == nil {
		a = &schemas.AgentRequest{}
	}
	return map[string]any{"tool": a.Tool, "client": map[string]any{"name": a.ClientName, "version": a.ClientVersion}}
}

// evalOptions say how a protocol's rules are evaluated.
type evalOptions struct {
	// skip leaves rules out (those of other protocols).
	skip func(*rule) bool
	// use is what of a mask means something on the protocol.
	use maskUse
	// strict says which rules deny when they fail to evaluate whatever their effect (deny
	// and mask rules always do).
	strict func(*rule) bool
}

// maskUse is what of a mask rule means something on a protocol's requests: content
// detectors always, columns on SQL, fields on HTTP. A mask rule with nothing that does
// masks nothing there.
type maskUse struct{ columns, fields bool }

func (u maskUse) useful(s *schemas.MaskSpec) bool {
	return s != nil && (len(s.Detectors) > 0 || u.columns && len(s.Columns) > 0 || u.fields && len(s.Fields) > 0)
}

func (u maskUse) trim(s *schemas.MaskSpec) {
	if !u.columns {
		s.Columns = nil
	}
	if !u.fields {
		s.Fields = nil
	}
}

// evaluate evaluates once each rule of the resource that o.skip does not leave out. Shadow
// policies' matches are kept apart: they say what would happen if those policies were
// enforced, and change nothing.
func (e *Engine) evaluate(resource string, vars map[string]any, o evalOptions) (enforced, all match, shadowSeen bool) {
	enforced.use, all.use = o.use, o.use
	rules := append(slices.Clone(e.byRes[resource]), e.byRes["*"]...)
	for _, r := range rules {
		if o.skip(r) {
			continue
		}
		out, _, err := r.prg.Eval(vars)
		if err == nil {
			if _, ok := out.Value().(bool); !ok {
				err = fmt.Errorf("condition is %s, not bool", out.Type().TypeName())
			}
		}
		matched := false
		if err != nil {
			if r.effect != schemas.EffectDeny && r.effect != schemas.EffectMask && (o.strict == nil || !o.strict(r)) {
				continue
			}
			// A deny or mask rule we cannot evaluate denies: what it would hide must not leak.
			matched = true
		} else if b, ok := out.Value().(bool); ok && b {
			matched = true
		}
		if !matched {
			continue
		}
		all.consider(r, err)
		if r.shadow {
			shadowSeen = true
		} else {
			enforced.consider(r, err)
		}
	}
	return enforced, all, shadowSeen
}

// catalogProbe is the statement whose decision says whether a caller may know what
// relations exist: reading pg_class tells that.
const catalogProbe = "select relname from pg_catalog.pg_class"

// maxNamed bounds the names a denial's reason lists.
const maxNamed = 8

// lookedAt says, for a statement no rule allows, what it names as written (relations and
// functions), so that the caller can tell what the policies do not let it reach. That a
// relation does not exist is said only to a caller the policies let read the catalog:
// to anyone else it would tell what exists.
func (e *Engine) lookedAt(req *Input, info *SQLInfo, now time.Time) string {
	rels, funcs := info.Tables, info.Functions
	var missing []string
	if lin := info.Lineage; lin != nil {
		rels, funcs, missing = lin.NamedRelations, lin.NamedFunctions, lin.Missing
	}
	var parts []string
	if len(rels) > 0 {
		parts = append(parts, "relation"+plural(len(rels))+" "+nameList(rels))
	}
	if len(funcs) > 0 {
		parts = append(parts, "function"+plural(len(funcs))+" "+nameList(funcs))
	}
	if len(parts) == 0 {
		return ""
	}
	out := " (the statement names " + strings.Join(parts, "; ") + ")"
	if len(missing) > 0 {
		probe, sq := *req, *req.SQL
		sq.Text = catalogProbe
		probe.SQL, probe.probing = &sq, true
		if pd := e.Decide(&probe, now); pd.Allowed() {
			verb := " does not exist"
			if len(missing) > 1 {
				verb = " do not exist"
			}
			out += "; " + nameList(missing) + verb
		}
	}
	return out
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// nameList lists names for a message: at most maxNamed, each quoted as PostgreSQL would
// when it is not a plain lower-case identifier (a client's name may hold anything).
func nameList(names []string) string {
	var b strings.Builder
	for i, n := range names {
		if i == maxNamed {
			fmt.Fprintf(&b, " and %d more", len(names)-maxNamed)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		for j, part := range strings.Split(n, ".") {
			if j > 0 {
				b.WriteByte('.')
			}
			b.WriteString(quoteIdent(part))
		}
	}
	return b.String()
}

func quoteIdent(s string) string {
	plain := s != ""
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && (r >= '0' && r <= '9' || r == '$')) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	if len(s) > 63 {
		s = s[:63] // PostgreSQL truncates identifiers to 63 bytes
	}
	q := strconv.Quote(s) // control characters escaped
	return `"` + strings.ReplaceAll(q[1:len(q)-1], `\"`, `""`) + `"`
}

// match is the most restrictive rule matched so far, every mask rule matched whose mask
// means something on the protocol, and every allow rule matched.
type match struct {
	best   *rule
	rank   int
	err    error
	masks  []*rule
	allows []*rule
	use    maskUse
}

func (m *match) consider(r *rule, err error) {
	if r.effect == schemas.EffectMask && err == nil {
		// Mask rules restrict what an allowed statement returns; they allow nothing.
		if m.use.useful(r.mask) {
			m.masks = append(m.masks, r)
		}
		return
	}
	if r.effect == schemas.EffectAllow && err == nil {
		m.allows = append(m.allows, r)
	}
	rank := effectRank[r.effect]
	if err != nil {
		rank = effectRank[schemas.EffectDeny]
	}
	if m.best == nil || rank > m.rank {
		m.best, m.err, m.rank = r, err, rank
	}
}

// fill sets the effect, the rule and the reason of d from the match (default deny). An
// allowed statement that mask rules matched is allowed with effect mask.
func (m *match) fill(d *schemas.DecisionReply, info *SQLInfo, resource string) {
	if m.best == nil {
		d.Effect = schemas.EffectDeny
		if info.ParseError != "" {
			d.Reason, d.SQLState, d.Position = info.ParseError, "42601", info.ParsePosition
		} else {
			d.Reason = fmt.Sprintf("no rule allows %s on resource %s", strings.Join(info.Kinds, ", "), resource)
		}
		return
	}
	d.Effect, d.Policy, d.Rule, d.Reason = m.best.effect, m.best.policy, m.best.name, m.best.reason
	if d.Reason == "" {
		d.Reason = "rule " + m.best.name + " matched"
	}
	if m.err != nil {
		d.Effect = schemas.EffectDeny
		d.Reason = fmt.Sprintf("rule could not be evaluated (%v); denying", m.err)
		return
	}
	if d.Effect == schemas.EffectRequireApproval {
		d.Approval = m.best.approval
	}

	if d.Effect == schemas.EffectAllow && len(m.masks) > 0 {
		d.Effect, d.Mask = schemas.EffectMask, &schemas.MaskSpec{}
		names := make([]string, len(m.masks))
		for i, r := range m.masks {
			mergeMask(d.Mask, r.mask)
			names[i] = r.policy + "/" + r.name
		}
		m.use.trim(d.Mask)
		d.Reason += "; masked by " + strings.Join(names, ", ")
	}
}

// readsVar reports whether a rule reads the variable name.
func readsVar(ast *cel.Ast, name string) bool {
	checked, err := cel.AstToCheckedExpr(ast)
	if err != nil {
		return true
	}
	for _, ref := range checked.GetReferenceMap() {
		if ref.GetName() == name {
			return true
		}
	}
	return false
}

// readsField reports whether a rule selects a field with one of the names (request.sql.text,
// identity.claims, ...), or indexes a map in a way that cannot be seen through.
func readsField(ast *cel.Ast, names ...string) bool {
	checked, err := cel.AstToCheckedExpr(ast)
	if err != nil {
		return true
	}
	found := false
	var walk func(e *exprpb.Expr)
	walk = func(e *exprpb.Expr) {
		if e == nil || found {
			return
		}
		switch k := e.GetExprKind().(type) {
		case *exprpb.Expr_SelectExpr:
			if slices.Contains(names, k.SelectExpr.GetField()) {
				found = true
			}
		case *exprpb.Expr_CallExpr:
			if k.CallExpr.GetFunction() == "_[_]" && len(k.CallExpr.GetArgs()) == 2 {
				// request.sql["text"], or an index we cannot see through.
				if c := k.CallExpr.GetArgs()[1].GetConstExpr(); c == nil || slices.Contains(names, c.GetStringValue()) {
					found = true
				}
			}
		}
		for _, c := range celChildren(e) {
			walk(c)
		}
	}
	walk(checked.GetExpr())
	return found
}

// celChildren are the expressions directly inside e, for the walks over a rule's syntax.
func celChildren(e *exprpb.Expr) []*exprpb.Expr {
	switch k := e.GetExprKind().(type) {
	case *exprpb.Expr_SelectExpr:
		return []*exprpb.Expr{k.SelectExpr.GetOperand()}
	case *exprpb.Expr_CallExpr:
		return append([]*exprpb.Expr{k.CallExpr.GetTarget()}, k.CallExpr.GetArgs()...)
	case *exprpb.Expr_ListExpr:
		return k.ListExpr.GetElements()
	case *exprpb.Expr_StructExpr:
		var out []*exprpb.Expr
		for _, en := range k.StructExpr.GetEntries() {
			out = append(out, en.GetMapKey(), en.GetValue())
		}
		return out
	case *exprpb.Expr_ComprehensionExpr:
		c := k.ComprehensionExpr
		return []*exprpb.Expr{c.GetIterRange(), c.GetAccuInit(), c.GetLoopCondition(), c.GetLoopStep(), c.GetResult()}
	}
	return nil
}

func claims(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func labels(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

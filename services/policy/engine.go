// Package policy decides what a caller may do with a request: CEL rules grouped in named
// policies per resource, evaluated against the caller's identity, the resource and what the
// request really does (SQL analysed with the PostgreSQL parser). Default deny; the most
// restrictive matching effect wins.
package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
)

// Effects, least to most restrictive.
const (
	EffectAllow = "allow"
	EffectDeny  = "deny"
)

var effectRank = map[string]int{EffectAllow: 1, EffectDeny: 3}

// Resource is what rules see of a resource.
type Resource struct {
	Name   string            `json:"name"`
	Type   string            `json:"type"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Request asks for a decision on one statement.
type Request struct {
	Identity schemas.Identity `json:"identity"`
	Resource Resource         `json:"resource"`
	SQL      string           `json:"sql"`
}

// Decision is the answer.
type Decision struct {
	Effect      string   `json:"effect"`
	Policy      string   `json:"policy,omitempty"`
	Rule        string   `json:"rule,omitempty"`
	Reason      string   `json:"reason"`
	Revision    uint64   `json:"revision"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	Kinds       []string `json:"kinds,omitempty"`
	Tables      []string `json:"tables,omitempty"`
}

// Allowed reports whether the statement may run.
func (d *Decision) Allowed() bool { return d.Effect == EffectAllow }

type rule struct {
	policy, name, effect, reason string
	prg                          cel.Program
	// onParseError: the rule refers to request.sql.parse_error, so it may decide statements
	// that do not parse. Other rules never match those: `kinds.all(...)` over the empty
	// facts of an unparsable statement would otherwise be vacuously true.
	onParseError bool
}

// Engine holds compiled rules. It is immutable; a policy change builds a new Engine.
type Engine struct {
	revision uint64
	byRes    map[string][]*rule // resource name → rules, "*" for every resource
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
	e := &Engine{revision: revision, byRes: map[string][]*rule{}}
	var errs []error
	for i, p := range policies {
		for j, r := range p.Rules {
			path := fmt.Sprintf("policies[%d].rules[%d].when", i, j)
			ast, iss := env.Compile(r.When)
			if iss.Err() != nil {
				errs = append(errs, &CompileError{Path: path, Err: fmt.Sprintf("policy %q rule %q: %s", p.Name, r.Name, iss.Err())})
				continue
			}
			if ast.OutputType() != cel.BoolType {
				errs = append(errs, &CompileError{Path: path, Err: fmt.Sprintf("policy %q rule %q: condition is %s, must be bool", p.Name, r.Name, ast.OutputType())})
				continue
			}
			prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
			if err != nil {
				errs = append(errs, &CompileError{Path: path, Err: err.Error()})
				continue
			}
			rl := &rule{policy: p.Name, name: r.Name, effect: r.Effect, reason: r.Reason, prg: prg,
				onParseError: strings.Contains(r.When, "parse_error")}
			for _, res := range p.Resources {
				e.byRes[res] = append(e.byRes[res], rl)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return e, nil
}

// Revision is the policy revision this engine was built from.
func (e *Engine) Revision() uint64 { return e.revision }

// Decide evaluates every rule for the request's resource. Default deny; the most
// restrictive match wins; a deny rule that fails to evaluate (for instance a missing map
// key: write `"env" in resource.labels && ...`) denies (fail closed). A statement that does
// not parse is decided only by rules that refer to request.sql.parse_error.
func (e *Engine) Decide(req *Request, now time.Time) Decision {
	info := AnalyzeSQL(req.SQL)
	d := Decision{Revision: e.revision, Fingerprint: info.Fingerprint, Kinds: info.Kinds, Tables: info.Tables}
	vars := map[string]any{
		"identity": map[string]any{
			"sub": req.Identity.Subject, "issuer": req.Identity.Issuer, "groups": nonNil(req.Identity.Groups),
			"kind": req.Identity.Kind, "on_behalf_of": req.Identity.OnBehalfOf,
		},
		"resource": map[string]any{"name": req.Resource.Name, "type": req.Resource.Type, "labels": labels(req.Resource.Labels)},
		"request": map[string]any{"kind": "sql", "sql": map[string]any{
			"text": info.Text, "kinds": info.Kinds, "tables": info.Tables, "tables_read": info.TablesRead,
			"tables_written": info.TablesWritten, "functions": info.Functions, "has_where": info.HasWhere,
			"statements": int64(info.Statements), "fingerprint": info.Fingerprint, "parse_error": info.ParseError,
		}},
		"grants": []any{},
		"now":    now,
	}
	var best *rule
	var bestErr error
	rules := append(slices.Clone(e.byRes[req.Resource.Name]), e.byRes["*"]...)
	for _, r := range rules {
		if info.ParseError != "" && !r.onParseError {
			continue
		}
		out, _, err := r.prg.Eval(vars)
		matched := false
		if err != nil {
			if r.effect != EffectDeny {
				continue
			}
			matched = true // a deny rule we cannot evaluate denies
		} else if b, ok := out.Value().(bool); ok && b {
			matched = true
		}
		if matched && (best == nil || effectRank[r.effect] > effectRank[best.effect]) {
			best, bestErr = r, err
		}
	}
	if best == nil {
		d.Effect = EffectDeny
		if info.ParseError != "" {
			d.Reason = "statement does not parse (" + info.ParseError + ") and no rule allows unparsable statements"
		} else {
			d.Reason = fmt.Sprintf("no rule allows %s on resource %s", strings.Join(info.Kinds, ", "), req.Resource.Name)
		}
		return d
	}
	d.Effect, d.Policy, d.Rule, d.Reason = best.effect, best.policy, best.name, best.reason
	if bestErr != nil {
		d.Reason = fmt.Sprintf("rule could not be evaluated (%v); denying", bestErr)
	}
	if d.Reason == "" {
		d.Reason = "rule " + best.name + " matched"
	}
	return d
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

package config

import (
	"github.com/gatehouse/gatehouse/services/jsonmask"

	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Policy is a named group of CEL rules for some resources.
type Policy struct {
	Name string `yaml:"name"`
	// Shadow evaluates the policy and records what it would decide ("would deny") without
	// enforcing it, to try a new policy on live traffic.
	Shadow    bool     `yaml:"shadow"`
	Resources []string `yaml:"resources"`
	Rules     []Rule   `yaml:"rules"`
}

// Rule is one CEL condition with its effect.
type Rule struct {
	Name   string `yaml:"name"`
	Effect string `yaml:"effect"` // allow, mask, require_approval or deny
	When   string `yaml:"when"`
	Reason string `yaml:"reason"`
	Mask   *Mask  `yaml:"mask,omitempty"` // effect mask: what to hide
	// Approval, with effect require_approval, says who approves and how; without it the
	// statement is refused with "approval required".
	Approval *Approval `yaml:"approval,omitempty"`
	// Reveal, on an allow rule, lets what the gateway masks by default through for the
	// requests the rule allows: secrets (the data of Kubernetes Secret objects).
	Reveal []string `yaml:"reveal,omitempty"`
}

// Reveals are what an allow rule can reveal.
var Reveals = []string{"secrets"}

// Mask says what a rule with effect mask hides in results.
type Mask struct {
	// Columns are source columns, "table.column" (schema public) or "schema.table.column",
	// recognised by the table OID and attribute number PostgreSQL reports for each result
	// column, so that aliases do not escape.
	Columns []string `yaml:"columns"`
	// Detectors find sensitive values in any text value: card (Luhn-valid card numbers),
	// email, ssn (US), iban (checksum-valid), phone.
	Detectors []string `yaml:"detectors"`
	// Regex are custom detectors (RE2 syntax).
	Regex []string `yaml:"regex"`
	// Fields are fields of JSON bodies (HTTP responses) by path: $.customers[*].card_number,
	// $..password, $.data.* (syntax: services/jsonmask).
	Fields []string `yaml:"fields"`
	// Method is redact (default), partial (keep the last 4 characters) or hmac
	// (deterministic keyed token: equal values give equal tokens).
	Method string `yaml:"method"`
	// Probing is refuse (default) or allow: whether a statement may use a masked column
	// other than as a result column (to filter, sort, group, join, compare with DISTINCT or
	// a set operation, pass to a function with effects, or write elsewhere), which would
	// reveal its values row by row.
	Probing string `yaml:"probing"`
	// Derived is mask (default) or refuse: whether a statement may return values computed
	// from a masked column (masked whole), or only the column itself.
	Derived string `yaml:"derived"`
}

// MaskDetectors are the built-in content detectors.
var MaskDetectors = []string{"card", "email", "ssn", "iban", "phone"}

// MaskMethods are the ways a value can be masked.
var MaskMethods = []string{"redact", "partial", "hmac"}

// validate checks one policy but its name (unique among all: Config.Validate).
func (pol *Policy) validate(path string, ck *checker) {
	// The name is a key of the gh_policies bucket (and shows in events and URLs).
	if pol.Name != "" && !validKey(pol.Name) {
		ck.add(path+".name", "%q may hold only letters, digits and - _ . = / (not starting or ending with '.'), at most 128 bytes", pol.Name)
	}
	if len(pol.Resources) == 0 {
		ck.add(path+".resources", "required (resource names, or \"*\")")
	}
	ck.resourceRefs(path+".resources", pol.Resources)
	for j := range pol.Rules {
		pol.Rules[j].validate(fmt.Sprintf("%s.rules[%d]", path, j), ck)
	}
}

// validate checks a rule, with its mask and approval blocks: each only with its effect.
func (r *Rule) validate(path string, ck *checker) {
	ck.required(path+".name", r.Name)
	ck.oneOf(path+".effect", r.Effect, "allow", "mask", "require_approval", "deny")
	ck.required(path+".when", r.When)
	if r.Effect != "mask" {
		if r.Mask != nil {
			ck.add(path+".mask", "only rules with effect mask take a mask")
		}
	} else {
		r.Mask.validate(path+".mask", ck)
	}
	for i, v := range r.Reveal {
		if r.Effect != "allow" {
			ck.add(path+".reveal", "only rules with effect allow reveal")
			break
		}
		ck.oneOf(fmt.Sprintf("%s.reveal[%d]", path, i), v, Reveals...)
	}
	if r.Approval != nil {
		if r.Effect != "require_approval" {
			ck.add(path+".approval", "only rules with effect require_approval take an approval")
		} else {
			r.Approval.validate(path+".approval", ck)
		}
	}
}

// validate checks the mask of a rule with effect mask; m may be nil (a problem then).
func (m *Mask) validate(path string, ck *checker) {
	if m == nil || len(m.Columns)+len(m.Detectors)+len(m.Regex)+len(m.Fields) == 0 {
		ck.add(path, "effect mask needs mask.columns, mask.fields, mask.detectors or mask.regex")
		return
	}
	for i, f := range m.Fields {
		if _, err := jsonmask.ParsePath(f); err != nil {
			ck.add(fmt.Sprintf("%s.fields[%d]", path, i), "%v", err)
		}
	}
	for i, c := range m.Columns {
		parts := strings.Split(c, ".")
		if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
			ck.add(fmt.Sprintf("%s.columns[%d]", path, i), "%q is not table.column or schema.table.column", c)
		}
	}
	for i, d := range m.Detectors {
		if !slices.Contains(MaskDetectors, d) {
			ck.add(fmt.Sprintf("%s.detectors[%d]", path, i), "unknown detector %q (one of %s)", d, strings.Join(MaskDetectors, ", "))
		}
	}
	for i, re := range m.Regex {
		if _, err := regexp.Compile(re); err != nil {
			ck.add(fmt.Sprintf("%s.regex[%d]", path, i), "%v", err)
		}
	}
	if m.Method != "" && !slices.Contains(MaskMethods, m.Method) {
		ck.add(path+".method", "unknown method %q (one of %s)", m.Method, strings.Join(MaskMethods, ", "))
	}
	if m.Probing != "" && m.Probing != "refuse" && m.Probing != "allow" {
		ck.add(path+".probing", "%q: refuse (the default) or allow", m.Probing)
	}
	if m.Derived != "" && m.Derived != "mask" && m.Derived != "refuse" {
		ck.add(path+".derived", "%q: mask (the default) or refuse", m.Derived)
	}
}

package config

// PolicyTest is one expected decision.
type PolicyTest struct {
	Name     string   `yaml:"name"`
	As       string   `yaml:"as"`      // the token subject
	AsName   string   `yaml:"as_name"` // identity.name (default: the subject, as for a token without name claims)
	Groups   []string `yaml:"groups"`
	Grants   []string `yaml:"grants"` // roles the caller holds grants for
	Resource string   `yaml:"resource"`
	SQL      string   `yaml:"sql"`
	Expect   string   `yaml:"expect"` // allow, mask, require_approval or deny
	Rule     string   `yaml:"rule"`   // optional: the rule that must decide
}

func (tc *PolicyTest) validate(path string, ck *checker) {
	ck.required(path+".name", tc.Name)
	ck.required(path+".as", tc.As)
	ck.required(path+".sql", tc.SQL)
	ck.oneOf(path+".expect", tc.Expect, "allow", "mask", "require_approval", "deny")
	if !ck.resources[tc.Resource] {
		ck.add(path+".resource", "unknown resource %q", tc.Resource)
	}
}

package config

import (
	"time"
)

// Approval is how a require_approval rule is approved.
type Approval struct {
	Approvers []string      `yaml:"approvers"`          // groups whose members may approve
	Required  int           `yaml:"required,omitempty"` // distinct approvals needed (default 1)
	Timeout   time.Duration `yaml:"timeout,omitempty"`  // how long the request stays open (default 5m)
	// Mode is hold (default: the client waits, the statement runs once approved) or
	// fail_fast (the client gets the approval id at once; the identical statement from the
	// same identity may run once within Window after approval).
	Mode   string        `yaml:"mode,omitempty"`
	Window time.Duration `yaml:"window,omitempty"` // fail_fast (default 1h)
}

// validate checks a rule's approval block (the rule checks that its effect takes one).
func (a *Approval) validate(path string, ck *checker) {
	if len(a.Approvers) == 0 {
		ck.add(path+".approvers", "required (groups whose members may approve)")
	}
	if a.Required < 0 || a.Required > 10 {
		ck.add(path+".required", "%d is outside 1..10", a.Required)
	}
	if a.Timeout < 0 || a.Timeout > 24*time.Hour {
		ck.add(path+".timeout", "%s is outside 0..24h", a.Timeout)
	}
	if a.Mode != "" && a.Mode != "hold" && a.Mode != "fail_fast" {
		ck.add(path+".mode", "%q is not hold or fail_fast", a.Mode)
	}
	if a.Window < 0 || a.Window > 7*24*time.Hour {
		ck.add(path+".window", "%s is outside 0..168h", a.Window)
	}
}

// GrantRole is a role that can be granted for a while (gatehouse grants request).
type GrantRole struct {
	Role      string   `yaml:"role"`
	Resources []string `yaml:"resources"` // resource names, or "*"
	Approvers []string `yaml:"approvers"`
	Required  int      `yaml:"required"` // distinct approvals (default 1)
	// MaxDuration bounds what may be asked for (default 8h); Timeout is how long the
	// request waits for approvers (default 1h).
	MaxDuration time.Duration `yaml:"max_duration"`
	Timeout     time.Duration `yaml:"timeout"`
	// OnExpiry: end_sessions (default: sessions that used the grant end) or next_statement
	// (they lose the rights on their next statement).
	OnExpiry string `yaml:"on_expiry"`
}

// GrantRole returns the grant role named role.
func (c *Config) GrantRole(role string) (*GrantRole, bool) {
	for i := range c.Grants {
		if c.Grants[i].Role == role {
			return &c.Grants[i], true
		}
	}
	return nil, false
}

func (g *GrantRole) applyDefaults() {
	def(&g.MaxDuration, 8*time.Hour)
	def(&g.Timeout, time.Hour)
	def(&g.OnExpiry, "end_sessions")
	def(&g.Required, 1)
}

// validate checks one grant role but its role name (unique among all: Config.Validate).
func (g *GrantRole) validate(path string, ck *checker) {
	if len(g.Approvers) == 0 {
		ck.add(path+".approvers", "required (groups whose members may approve)")
	}
	ck.resourceRefs(path+".resources", g.Resources)
	if g.OnExpiry != "" {
		ck.oneOf(path+".on_expiry", g.OnExpiry, "end_sessions", "next_statement")
	}
	if g.MaxDuration < 0 || g.Timeout < 0 || g.Required < 0 {
		ck.add(path, "max_duration, timeout and required cannot be negative")
	}
}

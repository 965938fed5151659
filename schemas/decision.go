package schemas

// Allowed reports whether the statement may run (masked or not).
func (d *DecisionReply) Allowed() bool { return d.Effect == EffectAllow || d.Effect == EffectMask }

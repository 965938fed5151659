package config

// Query configures the HTTP API over ClickHouse.
type Query struct {
	// AuditorGroups may use the audit API.
	AuditorGroups []string `yaml:"auditor_groups"`
	// AdminGroups may change policies and resources through the API (default
	// gatehouse-admins).
	AdminGroups []string `yaml:"admin_groups"`
}

func (q *Query) applyDefaults() {
	if len(q.AdminGroups) == 0 {
		q.AdminGroups = []string{"gatehouse-admins"}
	}
	if len(q.AuditorGroups) == 0 {
		q.AuditorGroups = []string{"auditors"}
	}
}

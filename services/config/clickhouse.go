package config

// ClickHouse is the audit store.
type ClickHouse struct {
	Address  string `yaml:"address"`
	Database string `yaml:"database"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

func (c *ClickHouse) applyDefaults() {
	def(&c.Database, "gatehouse")
	def(&c.Username, "default")
}

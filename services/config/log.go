package config

// Log configures slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

func (l *Log) applyDefaults() {
	def(&l.Level, "info")
	def(&l.Format, "text")
}

func (l *Log) validate(path string, ck *checker) {
	ck.oneOf(path+".level", l.Level, "debug", "info", "warn", "error")
	ck.oneOf(path+".format", l.Format, "text", "json")
}

package config

// Server is the HTTP server every process runs (API, health, metrics, dev issuer).
type Server struct {
	HTTPListen string `yaml:"http_listen"`
	// Pprof serves Go profiling under /debug/pprof (off by default: it exposes internals).
	Pprof bool `yaml:"pprof"`
}

func (s *Server) applyDefaults() {
	def(&s.HTTPListen, "127.0.0.1:8080")
}

func (s *Server) validate(path string, ck *checker) {
	ck.hostPort(path+".http_listen", s.HTTPListen)
}

package http

// FoldKey is foldKey, for tests.
var FoldKey = foldKey

// OpenConns is what the limit listener counts.
func OpenConns(s *Server) int64 { return s.open.Load() }

// TrackedConns is how many client connections the server keeps state for.
func TrackedConns(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

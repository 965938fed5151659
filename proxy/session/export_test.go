package session

// Pending reports how many of s's events are recorded but not yet encoded, and how many
// are encoded into its batch and not yet handed to the publisher.
func Pending(s *Session) (raw, encoded int) {
	s.enc.Lock()
	defer s.enc.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.raw), s.batch.n
}

// UseGrant records that a statement of s was allowed while the caller held grant id.
func UseGrant(s *Session, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grants == nil {
		s.grants = map[string]bool{}
	}
	s.grants[id] = true
}

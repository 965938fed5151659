package session

// The registry of a proxy's live sessions: what ends a session from the gateway's side
// (a revocation, the token's expiry, the resource's maximum lifetime) is decided here, the
// same for every protocol; how a session ends on the wire is the protocol's Terminate.

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
)

// Terminate ends one session on the wire: the client is told msg (the protocol's own way),
// ev is recorded before the client can go (its going ends the session), what runs on the
// backend is cancelled and the connections are closed. It must not wait: it does at once
// what needs no waiting (tell the client, when its writer is free) and returns the rest
// (nil when nothing is left), which the registry runs concurrently for every session a
// revocation ends, so that every client hears of it first.
type Terminate func(ev *schemas.SessionTerminated, msg string) (rest func())

// Registry is a proxy's live sessions and the revocations in force: it refuses a session
// a revocation matches, and ends a live one when a revocation comes to match it, when its
// token expires, or when its resource's maximum lifetime passes.
type Registry struct {
	log  *slog.Logger
	revs atomic.Pointer[bus.Revocations] // nil until Follow: nothing is revoked
	mu   sync.Mutex
	live map[*live]struct{}
}

// live is one registered session.
type live struct {
	s         *Session
	terminate Terminate
}

// NewRegistry makes an empty registry; Follow connects it to the revocations.
func NewRegistry(log *slog.Logger) *Registry {
	return &Registry{log: log, live: map[*live]struct{}{}}
}

// Follow replays the revocations (GH_REVOKE) and keeps following them until ctx ends,
// ending the live sessions each new one matches. It returns once the replay is done: a
// proxy calls it before it admits a session.
func (r *Registry) Follow(ctx context.Context, js jetstream.JetStream) error {
	revs, err := bus.FollowRevocations(ctx, js, r.log, r.Revoke)
	if err != nil {
		return err
	}
	r.revs.Store(revs)
	return nil
}

// RevokedError refuses a session that a revocation in force matches.
type RevokedError struct {
	Revocation schemas.RevocationState
}

func (e *RevokedError) Error() string {
	rv := &e.Revocation
	return fmt.Sprintf("access revoked for %s by %s at %s: %s", rv.Value, rv.Revoker(), rv.At.Format(time.RFC3339), rv.Why())
}

// revokedIdentity returns the revocation in force of id, if one is.
func (r *Registry) revokedIdentity(id schemas.Identity) (schemas.RevocationState, bool) {
	revs := r.revs.Load()
	if revs == nil {
		return schemas.RevocationState{}, false
	}
	return revs.Check(time.Now(), schemas.RevokeKindIdentity, schemas.RevocationTargets(id)...)
}

// Admit refuses (*RevokedError) a caller whose identity a revocation in force matches; a
// proxy asks before it opens anything for the caller.
func (r *Registry) Admit(id schemas.Identity) error {
	if rv, ok := r.revokedIdentity(id); ok {
		return &RevokedError{Revocation: rv}
	}
	return nil
}

// Register adds a live session, which terminate ends: at once if a revocation of its
// identity came in while it was being set up (after Admit), when a revocation comes to
// match it, and when the caller's token expires or the resource's maximum lifetime passes.
// The returned func removes it, at its end.
func (r *Registry) Register(s *Session, terminate Terminate) (unregister func()) {
	l := &live{s: s, terminate: terminate}
	r.mu.Lock()
	r.live[l] = struct{}{}
	r.mu.Unlock()
	// A revocation that came in while the session was being set up, and the session's end
	// when the caller's token expires (or its maximum lifetime passes).
	if rv, ok := r.revokedIdentity(s.Identity.Identity); ok {
		go r.Revoke(rv)
	}
	var timer *time.Timer
	if end, ev, msg := deadline(s); !end.IsZero() {
		timer = time.AfterFunc(time.Until(end), func() {
			if rest := terminate(ev, msg); rest != nil {
				rest()
			}
		})
	}
	return func() {
		if timer != nil {
			timer.Stop()
		}
		r.mu.Lock()
		delete(r.live, l)
		r.mu.Unlock()
	}
}

// deadline is when the gateway ends the session by itself: when the caller's token
// expires (the default), or after the resource's maximum session lifetime.
func deadline(s *Session) (time.Time, *schemas.SessionTerminated, string) {
	if s.Resource.TokenExpiry == "continue" {
		life := s.Resource.MaxSessionLifetime
		if life <= 0 {
			life = 12 * time.Hour
		}
		return time.Now().Add(life), &schemas.SessionTerminated{Cause: "max_lifetime"},
			fmt.Sprintf("terminating connection: the session reached the maximum lifetime of %s on this resource; reconnect", life)
	}
	exp := s.Identity.Expiry
	return exp, &schemas.SessionTerminated{Cause: "token_expired"},
		fmt.Sprintf("terminating connection: the access token expired at %s; reconnect with a fresh token", exp.UTC().Format(time.RFC3339))
}

// matches reports whether rv reaches the session: its identity (by subject, name or the
// human behind it), the session itself, or a grant one of its decisions relied on.
func matches(rv *schemas.RevocationState, s *Session) bool {
	switch rv.Kind {
	case schemas.RevokeKindIdentity:
		return rv.MatchesIdentity(s.Identity.Identity)
	case schemas.RevokeKindSession:
		return s.ID == rv.Value
	case schemas.RevokeKindGrant:
		return s.UsedGrant(rv.Value)
	}
	return false
}

// Revoke ends the live sessions a revocation matches: each client is told the revoker and
// the reason, a statement in flight is cancelled on the backend, and the end is recorded.
func (r *Registry) Revoke(rv schemas.RevocationState) {
	r.mu.Lock()
	var match []*live
	for l := range r.live {
		if matches(&rv, l.s) {
			match = append(match, l)
		}
	}
	r.mu.Unlock()
	msg := fmt.Sprintf("terminating connection: access revoked by %s: %s", rv.Revoker(), rv.Why())
	// First every client hears of it, in one pass; then backends are cancelled, causes
	// recorded and connections closed, concurrently.
	start := time.Now()
	var rests []func()
	for _, l := range match {
		ev := &schemas.SessionTerminated{Cause: "revoked", Reason: rv.Reason, Revocation: rv.Key(), By: rv.By}
		if rest := l.terminate(ev, msg); rest != nil {
			rests = append(rests, rest)
		}
	}
	told := time.Since(start)
	var wg sync.WaitGroup
	for _, rest := range rests {
		wg.Go(rest)
	}
	wg.Wait()
	if len(match) > 0 {
		r.log.Info("sessions ended by a revocation", "kind", rv.Kind, "value", rv.Value, "sessions", len(match),
			"since_revoked", start.Sub(rv.At), "clients_told_in", told, "closed_in", time.Since(start))
	}
}

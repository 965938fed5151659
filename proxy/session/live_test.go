package session_test

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// ended collects the terminations of the sessions it makes Terminate funcs for.
type ended struct {
	mu  sync.Mutex
	got map[string]string // session id: cause and message
}

func (e *ended) terminate(s *session.Session) session.Terminate {
	return func(ev *schemas.SessionTerminated, msg string) func() {
		return func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.got[s.ID] = ev.Cause + " " + ev.Revocation + ": " + msg
		}
	}
}

func (e *ended) of(s *session.Session) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.got[s.ID]
}

// A revocation ends the live sessions it matches, by identity (subject, name, the human
// behind a service token), session or grant, through each one's Terminate; an unregistered
// session is not touched.
func TestRegistryRevokeMatches(t *testing.T) {
	reg := session.NewRegistry(slog.New(slog.DiscardHandler))
	res := &config.Resource{Name: "db", TokenExpiry: "continue", MaxSessionLifetime: time.Hour}
	e := &ended{got: map[string]string{}}
	open := func(sub, name, obo string) *session.Session {
		s := session.New(&identity.Identity{Identity: schemas.Identity{Subject: sub, Name: name, OnBehalfOf: obo}}, res, nil, nil, session.Limits{})
		reg.Register(s, e.terminate(s))
		return s
	}
	alice := open("sub-alice", "alice@example.com", "")
	batch := open("svc-batch", "", "alice@example.com")
	bob := open("sub-bob", "bob@example.com", "")
	carol := open("sub-carol", "", "")
	session.UseGrant(carol, "g1")
	gone := session.New(&identity.Identity{Identity: schemas.Identity{Subject: "sub-gone"}}, res, nil, nil, session.Limits{})

	reg.Revoke(schemas.RevocationState{Kind: schemas.RevokeKindIdentity, Value: "alice@example.com", By: "sub-sec", ByName: "sec@example.com", Reason: "left", At: time.Now()})
	require.Equal(t, "revoked identity:alice@example.com: terminating connection: access revoked by sec@example.com: left", e.of(alice))
	require.Equal(t, e.of(alice), e.of(batch), "the human behind a service token")
	require.Empty(t, e.of(bob))

	reg.Revoke(schemas.RevocationState{Kind: schemas.RevokeKindSession, Value: bob.ID, By: "sub-sec"})
	require.Equal(t, "revoked session:"+bob.ID+": terminating connection: access revoked by sub-sec: no reason given", e.of(bob))

	reg.Revoke(schemas.RevocationState{Kind: schemas.RevokeKindGrant, Value: "g2", By: "sub-sec"})
	require.Empty(t, e.of(carol))
	reg.Revoke(schemas.RevocationState{Kind: schemas.RevokeKindGrant, Value: "g1", By: schemas.RevokedBySystem, Reason: schemas.ReasonGrantExpired})
	require.Contains(t, e.of(carol), "revoked grant:g1")

	reg.Register(gone, e.terminate(gone))()
	reg.Revoke(schemas.RevocationState{Kind: schemas.RevokeKindIdentity, Value: "sub-gone", By: "sub-sec"})
	require.Empty(t, e.of(gone))
}

// A session ends at its token's expiry, or, with token_expiry continue, at its resource's
// maximum lifetime; unregistered first, it is not ended.
func TestRegistryDeadlines(t *testing.T) {
	reg := session.NewRegistry(slog.New(slog.DiscardHandler))
	e := &ended{got: map[string]string{}}
	exp := time.Now().Add(50 * time.Millisecond)
	tok := session.New(&identity.Identity{Identity: schemas.Identity{Subject: "a"}, Expiry: exp}, &config.Resource{Name: "db"}, nil, nil, session.Limits{})
	reg.Register(tok, e.terminate(tok))
	long := session.New(&identity.Identity{Identity: schemas.Identity{Subject: "b"}, Expiry: exp},
		&config.Resource{Name: "db", TokenExpiry: "continue", MaxSessionLifetime: 100 * time.Millisecond}, nil, nil, session.Limits{})
	reg.Register(long, e.terminate(long))
	left := session.New(&identity.Identity{Identity: schemas.Identity{Subject: "c"}, Expiry: exp}, &config.Resource{Name: "db"}, nil, nil, session.Limits{})
	reg.Register(left, e.terminate(left))()

	require.Eventually(t, func() bool { return e.of(tok) != "" && e.of(long) != "" }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "token_expired : terminating connection: the access token expired at "+exp.UTC().Format(time.RFC3339)+"; reconnect with a fresh token", e.of(tok))
	require.Equal(t, "max_lifetime : terminating connection: the session reached the maximum lifetime of 100ms on this resource; reconnect", e.of(long))
	require.Empty(t, e.of(left))
}

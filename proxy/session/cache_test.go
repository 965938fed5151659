package session

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
)

type countingDecider struct {
	calls int
	d     schemas.DecisionReply
}

func (c *countingDecider) Decide(context.Context, *schemas.DecisionRequest) schemas.DecisionReply {
	c.calls++
	return c.d
}

func newCache(t *testing.T, next Decider, ttl time.Duration) *CachingDecider {
	c, err := NewCachingDecider(next, nil, ttl, 100, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	return c
}

func req(sub string, groups []string, sql string) *schemas.DecisionRequest {
	return &schemas.DecisionRequest{Identity: schemas.Identity{Subject: sub, Groups: groups}, Resource: schemas.Resource{Name: "demo"}, SQL: &schemas.SQLRequest{Text: sql}}
}

func TestCachingDecider(t *testing.T) {
	next := &countingDecider{d: schemas.DecisionReply{Effect: "allow", Revision: 5, Cacheable: true}}
	c := newCache(t, next, time.Minute)
	ctx := context.Background()

	d := c.Decide(ctx, req("a", []string{"x", "y"}, "select * from t where id = 1"))
	require.False(t, d.Cached)
	d = c.Decide(ctx, req("a", []string{"y", "x"}, "select * from t where id = 2"))
	require.True(t, d.Cached, "same identity, same statement but for its literal")
	require.Equal(t, 1, next.calls)

	c.Decide(ctx, req("a", []string{"x"}, "select * from t where id = 3"))
	c.Decide(ctx, req("b", []string{"x", "y"}, "select * from t where id = 3"))
	c.Decide(ctx, req("a", []string{"x", "y"}, "select * from t where id = 3; drop table t"))
	require.Equal(t, 4, next.calls, "other groups, another subject and another statement are decided anew")
	named := req("a", []string{"x", "y"}, "select * from t where id = 3")
	named.Identity.Name = "alice@example.com"
	c.Decide(ctx, named)
	require.Equal(t, 5, next.calls, "rules may read identity.name: another name is decided anew")

	c.observe(6) // announced on gh.policy.revision
	next.d.Revision = 6
	c.Decide(ctx, req("a", []string{"x", "y"}, "select * from t where id = 1"))
	require.Equal(t, 6, next.calls, "a new revision drops the cache")
	d = c.Decide(ctx, req("a", []string{"x", "y"}, "select * from t where id = 1"))
	require.True(t, d.Cached)
	require.Equal(t, uint64(6), d.Revision)
	require.Equal(t, 6, next.calls)

	c.Decide(ctx, req("a", nil, "select 'unterminated"))
	c.Decide(ctx, req("a", nil, "select 'unterminated"))
	require.Equal(t, 8, next.calls, "text that does not lex is never cached")
}

func TestCachingDeciderKeepsWhatItMayNot(t *testing.T) {
	for name, d := range map[string]schemas.DecisionReply{
		"not cacheable": {Effect: "allow", Revision: 1},
		"fail closed":   {Effect: "deny", Reason: "no policy service", Cacheable: true},
	} {
		next := &countingDecider{d: d}
		c := newCache(t, next, time.Minute)
		c.Decide(context.Background(), req("a", nil, "select 1"))
		c.Decide(context.Background(), req("a", nil, "select 1"))
		require.Equal(t, 2, next.calls, name)
	}
	next := &countingDecider{d: schemas.DecisionReply{Effect: "allow", Revision: 1, Cacheable: true}}
	c := newCache(t, next, 0)
	c.Decide(context.Background(), req("a", nil, "select 1"))
	c.Decide(context.Background(), req("a", nil, "select 1"))
	require.Equal(t, 2, next.calls, "expired entries are not used")
}

// The policy service announces its revision on gh.policy.revision; a proxy's cache drops
// decisions of any other revision as soon as it hears it.
func TestRevisionAnnouncementDropsTheCache(t *testing.T) {
	b := bustest.Connect(t)
	next := &countingDecider{d: schemas.DecisionReply{Effect: "allow", Revision: 1, Cacheable: true}}
	c, err := NewCachingDecider(next, b.NC, time.Minute, 100, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	c.Decide(ctx, req("a", nil, "select 1"))
	require.True(t, c.Decide(ctx, req("a", nil, "select 2")).Cached)

	eng, err := policy.Compile(nil, 42)
	require.NoError(t, err)
	svc := policy.NewService(b.NC, eng, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = svc.Announce(actx) }()
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.revision == 42 && len(c.entries) == 0
	}, 5*time.Second, 10*time.Millisecond)
	require.False(t, c.Decide(ctx, req("a", nil, "select 3")).Cached, "decisions of the old revision are gone")
}

// Statements that PostgreSQL reads differently never share a cached decision, however
// their text is spelled to make a naive tokenizer read them alike.
func TestCacheKeysFollowThePostgreSQLScanner(t *testing.T) {
	next := &countingDecider{d: schemas.DecisionReply{Effect: "allow", Revision: 5, Cacheable: true}}
	c := newCache(t, next, time.Minute)
	ctx := context.Background()
	for _, pair := range [][2]string{
		{"select --\r'\n', id from t --'\n", "select --\r'\n', secret from t --'\n"},
		{"select --\r'\n' ; select 1 --'\n", "select --\r'\n' ; update t set x = 1 --'\n"},
		{"select 0xe+1 from t", "select 0xe-secret from t"},
		{"select 1e5 from t", "select 1e-secret from t"},
	} {
		before := next.calls
		c.Decide(ctx, req("a", nil, pair[0]))
		c.Decide(ctx, req("a", nil, pair[1]))
		require.Equal(t, before+2, next.calls, "%q then %q: the second must be decided, not served the first's decision", pair[0], pair[1])
	}
}

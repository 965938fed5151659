package session

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/policy"
)

// CachingDecider serves repeated decisions from memory: the key is the caller's identity,
// the resource and the statement with its literals replaced (Normalize), and an entry is
// valid only for the policy revision it was made under and for at most TTL. The policy
// service says which decisions may be cached (no rule of the resource reads literal text or
// the time); a new revision, seen in an answer or announced on gh.policy.revision, drops
// every entry.
type CachingDecider struct {
	next Decider
	ttl  time.Duration
	max  int
	sub  *nats.Subscription
	log  *slog.Logger

	mu       sync.Mutex
	revision uint64
	entries  map[string]cacheEntry

	hits, misses prometheus.Counter
}

type cacheEntry struct {
	d       policy.Decision
	expires time.Time
}

// NewCachingDecider wraps next. nc (optional) subscribes to revision announcements.
func NewCachingDecider(next Decider, nc *nats.Conn, ttl time.Duration, max int, reg prometheus.Registerer, log *slog.Logger) (*CachingDecider, error) {
	c := &CachingDecider{next: next, ttl: ttl, max: max, log: log, entries: map[string]cacheEntry{},
		hits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_decision_cache_hits_total", Help: "Decisions served from the proxy's cache."}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_decision_cache_misses_total", Help: "Decisions asked of the policy service."}),
	}
	reg.MustRegister(c.hits, c.misses)
	if nc != nil {
		sub, err := nc.Subscribe(bus.SubjectPolicyRevision, func(m *nats.Msg) {
			if rev, err := strconv.ParseUint(string(m.Data), 10, 64); err == nil {
				c.observe(rev)
			}
		})
		if err != nil {
			return nil, err
		}
		c.sub = sub
	}
	return c, nil
}

// Close stops listening for revisions.
func (c *CachingDecider) Close() {
	if c.sub != nil {
		_ = c.sub.Unsubscribe()
	}
}

// observe records the revision in force, dropping the cache when it changes.
func (c *CachingDecider) observe(rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev != c.revision {
		if len(c.entries) > 0 {
			c.log.Info("policy revision changed; decision cache dropped", "from", c.revision, "to", rev, "entries", len(c.entries))
		}
		c.revision = rev
		c.entries = map[string]cacheEntry{}
	}
}

func cacheKey(req *policy.Request, normalized string) string {
	id := req.Identity
	groups := slices.Clone(id.Groups)
	slices.Sort(groups)
	var b strings.Builder
	changed := ""
	if req.SchemaChanged {
		changed = "changed"
	}
	for _, s := range []string{id.Issuer, id.Subject, id.Name, id.Kind, id.OnBehalfOf, strings.Join(groups, ","), req.Resource.Name, req.CatalogVersion, changed, normalized} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	return b.String()
}

// Decide answers from the cache or asks next.
func (c *CachingDecider) Decide(ctx context.Context, req *policy.Request) policy.Decision {
	normalized, ok := Normalize(req.SQL)
	if !ok {
		c.misses.Inc()
		return c.next.Decide(ctx, req)
	}
	key := cacheKey(req, normalized)
	now := time.Now()
	c.mu.Lock()
	e, hit := c.entries[key]
	if hit && now.Before(e.expires) && e.d.Revision == c.revision {
		c.mu.Unlock()
		c.hits.Inc()
		d := e.d
		d.Cached = true
		return d
	}
	c.mu.Unlock()
	c.misses.Inc()
	d := c.next.Decide(ctx, req)
	if d.Revision == 0 {
		return d // a fail-closed answer: never cached
	}
	c.observe(d.Revision)
	if d.Cacheable {
		c.mu.Lock()
		if len(c.entries) >= c.max {
			c.entries = map[string]cacheEntry{} // bounded: start over rather than grow
		}
		if d.Revision == c.revision {
			c.entries[key] = cacheEntry{d: d, expires: now.Add(c.ttl)}
		}
		c.mu.Unlock()
	}
	return d
}

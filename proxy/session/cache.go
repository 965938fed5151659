package session

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/sqlscan"
)

// CachingDecider serves repeated decisions from memory: the key is the caller's identity,
// the resource and the statement with its literals replaced (sqlscan.Normalize), and an entry is
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
	// big holds the entries of long keys by their SHA-256, so that the cache's memory is
	// bounded by its entry count, not by the statements' sizes (up to megabytes).
	big map[[sha256.Size]byte]cacheEntry

	hits, misses prometheus.Counter
}

type cacheEntry struct {
	d       schemas.DecisionReply
	expires time.Time
}

// NewCachingDecider wraps next. nc (optional) subscribes to revision announcements.
func NewCachingDecider(next Decider, nc *nats.Conn, ttl time.Duration, max int, reg prometheus.Registerer, log *slog.Logger) (*CachingDecider, error) {
	c := &CachingDecider{next: next, ttl: ttl, max: max, log: log, entries: map[string]cacheEntry{}, big: map[[sha256.Size]byte]cacheEntry{},
		hits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_decision_cache_hits_total", Help: "Decisions served from the proxy's cache."}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_decision_cache_misses_total", Help: "Decisions asked of the policy service."}),
	}
	reg.MustRegister(c.hits, c.misses)
	if nc != nil {
		sub, err := nc.Subscribe(schemas.SubjectPolicyRevision, func(m *nats.Msg) {
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
		c.big = map[[sha256.Size]byte]cacheEntry{}
	}
}

// maxRawKey: longer keys are held by their hash.
const maxRawKey = 1 << 10

func (c *CachingDecider) getLocked(key string) (cacheEntry, bool) {
	if len(key) > maxRawKey {
		e, ok := c.big[sha256.Sum256([]byte(key))]
		return e, ok
	}
	e, ok := c.entries[key]
	return e, ok
}

func (c *CachingDecider) putLocked(key string, e cacheEntry) {
	if len(c.entries)+len(c.big) >= c.max {
		// bounded: start over rather than grow
		c.entries, c.big = map[string]cacheEntry{}, map[[sha256.Size]byte]cacheEntry{}
	}
	if len(key) > maxRawKey {
		c.big[sha256.Sum256([]byte(key))] = e
		return
	}
	c.entries[key] = e
}

func cacheKey(req *schemas.DecisionRequest, normalized string) string {
	id := req.Identity
	groups := slices.Clone(id.Groups)
	slices.Sort(groups)
	var b strings.Builder
	changed := ""
	if req.SQL.SchemaChanged {
		changed = "changed"
	}
	// Rules may read the agent part (request.agent): a decision for one MCP client is not
	// another's.
	agent := "-"
	if a := req.Agent; a != nil {
		agent = a.Tool + "\x00" + a.ClientName + "\x00" + a.ClientVersion
	}
	for _, s := range []string{id.Issuer, id.Subject, id.Name, id.Kind, id.OnBehalfOf, strings.Join(groups, ","), req.Resource.Name, req.SQL.CatalogVersion, changed, agent, normalized} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	return b.String()
}

// Decide answers from the cache or asks next.
func (c *CachingDecider) Decide(ctx context.Context, req *schemas.DecisionRequest) schemas.DecisionReply {
	if req.SQL == nil {
		// Only SQL decisions are cached (keyed by the normalized statement).
		c.misses.Inc()
		return c.next.Decide(ctx, req)
	}
	normalized, ok := sqlscan.Normalize(req.SQL.Text)
	if !ok {
		c.misses.Inc()
		return c.next.Decide(ctx, req)
	}
	key := cacheKey(req, normalized)
	now := time.Now()
	c.mu.Lock()
	e, hit := c.getLocked(key)
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
		if d.Revision == c.revision {
			c.putLocked(key, cacheEntry{d: d, expires: now.Add(c.ttl)})
		}
		c.mu.Unlock()
	}
	return d
}

// Package desired keeps Gatehouse's desired state, policies and resources, in NATS KV
// (buckets gh_policies and gh_resources, one key per name, YAML values). The config file
// seeds them; `gatehouse policy apply` and `gatehouse resource apply` change them through the
// API; every process watches them and applies a change within milliseconds, without a
// restart. Every change is an audit event (policy.changed) with who made it and the diff.
package desired

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pmezard/go-difflib/difflib"
	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
)

// Kinds of desired state.
const (
	KindPolicy   = "policy"
	KindResource = "resource"
)

// Store is the desired state in KV.
type Store struct {
	js        jetstream.JetStream
	policies  jetstream.KeyValue
	resources jetstream.KeyValue
	log       *slog.Logger
}

// Open creates the buckets if needed.
func Open(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*Store, error) {
	s := &Store{js: js, log: log}
	for _, b := range []struct {
		name string
		kv   *jetstream.KeyValue
	}{{bus.BucketPolicies, &s.policies}, {bus.BucketResources, &s.resources}} {
		var err error
		for attempt := 0; attempt < 20; attempt++ {
			if *b.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b.name, History: 16, Storage: jetstream.FileStorage}); err == nil {
				break
			}
			if ctx.Err() != nil {
				break
			}
			time.Sleep(250 * time.Millisecond) // several processes may create it at once
		}
		if err != nil {
			return nil, fmt.Errorf("KV bucket %s: %w", b.name, err)
		}
	}
	return s, nil
}

// Change is one applied change, as the audit event records it.
type Change struct {
	Kind   string // policy or resource
	Name   string
	Action string // created, updated or deleted
	Diff   string // unified diff of the YAML, secrets redacted
}

// Seed puts the config file's policies and resources into KV: those missing are created;
// those that differ are overwritten when overwrite is set (gatehouse dev), and otherwise
// left as KV has them (KV is the source of truth once seeded), with a warning.
func (s *Store) Seed(ctx context.Context, cfg *config.Config, overwrite bool) ([]Change, error) {
	var changes []Change
	for _, r := range cfg.Resources {
		c, err := s.seedOne(ctx, s.resources, KindResource, r.Name, r, overwrite)
		if err != nil {
			return changes, err
		}
		if c != nil {
			changes = append(changes, *c)
		}
	}
	for _, p := range cfg.Policies {
		c, err := s.seedOne(ctx, s.policies, KindPolicy, p.Name, p, overwrite)
		if err != nil {
			return changes, err
		}
		if c != nil {
			changes = append(changes, *c)
		}
	}
	return changes, nil
}

func (s *Store) seedOne(ctx context.Context, kv jetstream.KeyValue, kind, name string, v any, overwrite bool) (*Change, error) {
	val, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	cur, err := kv.Get(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if _, err := kv.Create(ctx, name, val); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("seed %s %s: %w", kind, name, err)
		} else if err != nil {
			return nil, nil // another process seeded it first
		}
		return &Change{Kind: kind, Name: name, Action: "created", Diff: diff(kind, name, nil, val)}, nil
	case err != nil:
		return nil, fmt.Errorf("read %s %s: %w", kind, name, err)
	case string(cur.Value()) == string(val):
		return nil, nil
	case !overwrite:
		s.log.Warn("the config file and KV disagree; KV is in force (change it with gatehouse "+kind+" apply)", "kind", kind, "name", name)
		return nil, nil
	}
	if _, err := kv.Update(ctx, name, val, cur.Revision()); err != nil {
		return nil, fmt.Errorf("seed %s %s: %w", kind, name, err)
	}
	return &Change{Kind: kind, Name: name, Action: "updated", Diff: diff(kind, name, cur.Value(), val)}, nil
}

// Policies returns the policies in KV, by name.
func (s *Store) Policies(ctx context.Context) ([]config.Policy, error) {
	return list[config.Policy](ctx, s.policies)
}

// Resources returns the resources in KV, by name.
func (s *Store) Resources(ctx context.Context) ([]config.Resource, error) {
	return list[config.Resource](ctx, s.resources)
}

func list[T any](ctx context.Context, kv jetstream.KeyValue) ([]T, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]T, 0, len(keys))
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var v T
		if err := yaml.Unmarshal(e.Value(), &v); err != nil {
			return nil, fmt.Errorf("%s in %s: %w", k, kv.Bucket(), err)
		}
		out = append(out, v)
	}
	return out, nil
}

// PutPolicies writes policies (already validated) and returns what changed.
func (s *Store) PutPolicies(ctx context.Context, ps []config.Policy) ([]Change, error) {
	var changes []Change
	for _, p := range ps {
		c, err := s.put(ctx, s.policies, KindPolicy, p.Name, p)
		if err != nil {
			return changes, err
		}
		if c != nil {
			changes = append(changes, *c)
		}
	}
	return changes, nil
}

// PutResources writes resources (already validated) and returns what changed.
func (s *Store) PutResources(ctx context.Context, rs []config.Resource) ([]Change, error) {
	var changes []Change
	for _, r := range rs {
		c, err := s.put(ctx, s.resources, KindResource, r.Name, r)
		if err != nil {
			return changes, err
		}
		if c != nil {
			changes = append(changes, *c)
		}
	}
	return changes, nil
}

func (s *Store) put(ctx context.Context, kv jetstream.KeyValue, kind, name string, v any) (*Change, error) {
	val, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	var before []byte
	action := "created"
	if cur, err := kv.Get(ctx, name); err == nil {
		if string(cur.Value()) == string(val) {
			return nil, nil
		}
		before, action = cur.Value(), "updated"
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, err
	}
	if _, err := kv.Put(ctx, name, val); err != nil {
		return nil, fmt.Errorf("write %s %s: %w", kind, name, err)
	}
	return &Change{Kind: kind, Name: name, Action: action, Diff: diff(kind, name, before, val)}, nil
}

// diff is the unified diff of two YAML values, with secrets redacted.
func diff(kind, name string, before, after []byte) string {
	d, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(redact(string(before))), B: difflib.SplitLines(redact(string(after))),
		FromFile: kind + "/" + name + " (before)", ToFile: kind + "/" + name + " (after)", Context: 3,
	})
	return d
}

// redact hides inline secrets (a PostgreSQL password, an HTTP backend's bearer token and
// basic_password, any *_secret or *_password, the password in a URL's userinfo): a diff
// goes into the audit trail, and resources are shown to auditors. It works on the YAML's
// tree, so a value of any style (a multi-line block, a quoted string) is hidden whole.
// Paths to files holding secrets (*_file) are not secrets. YAML that does not parse is
// hidden entirely.
func redact(y string) string {
	if strings.TrimSpace(y) == "" {
		return y
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(y), &doc); err != nil {
		return "<redacted: not YAML>\n"
	}
	redactNode(&doc)
	b, err := yaml.Marshal(&doc)
	if err != nil {
		return "<redacted>\n"
	}
	return string(b)
}

func redactNode(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch {
			case secretKey(k.Value) && !(v.Kind == yaml.ScalarNode && v.Value == ""):
				*v = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "<redacted>"}
			case v.Kind == yaml.ScalarNode && strings.Contains(v.Value, "@"):
				v.Value, v.Style = redactURL(v.Value), 0
			}
		}
	}
	for _, c := range n.Content {
		redactNode(c)
	}
}

// redactURL hides the password of a URL's userinfo (http://user:pass@host).
func redactURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.User == nil || u.Host == "" {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	return u.Redacted()
}

func secretKey(k string) bool {
	if strings.HasSuffix(k, "_file") {
		return false
	}
	return k == "password" || strings.HasSuffix(k, "_password") || strings.Contains(k, "secret") || k == "token" || strings.HasSuffix(k, "_token") ||
		k == "bearer"
}

// Watch calls fn with the full set of a bucket's values whenever it changes (and once with
// the initial set), until ctx ends.
func watch[T any](ctx context.Context, kv jetstream.KeyValue, log *slog.Logger, fn func([]T)) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", kv.Bucket(), err)
	}
	defer w.Stop()
	state := map[string]T{}
	initial := true
	emit := func() {
		keys := make([]string, 0, len(state))
		for k := range state {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := make([]T, 0, len(keys))
		for _, k := range keys {
			out = append(out, state[k])
		}
		fn(out)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s: closed", kv.Bucket())
			}
			if e == nil { // the initial values are all here
				initial = false
				emit()
				continue
			}
			switch e.Operation() {
			case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
				delete(state, e.Key())
			default:
				var v T
				if err := yaml.Unmarshal(e.Value(), &v); err != nil {
					log.Error("unreadable desired state in KV; ignored", "bucket", kv.Bucket(), "key", e.Key(), "err", err)
					continue
				}
				state[e.Key()] = v
			}
			if !initial {
				emit()
			}
		}
	}
}

// WatchPolicies calls fn with every policy whenever one changes.
func (s *Store) WatchPolicies(ctx context.Context, fn func([]config.Policy)) error {
	return watch(ctx, s.policies, s.log, fn)
}

// WatchResources calls fn with every resource whenever one changes.
func (s *Store) WatchResources(ctx context.Context, fn func([]config.Resource)) error {
	return watch(ctx, s.resources, s.log, fn)
}

// LiveResources resolves resource names to the resources in force.
type LiveResources struct {
	m     atomic.Pointer[map[string]*config.Resource]
	ready chan struct{}
	once  sync.Once
}

// NewLiveResources starts with the config file's resources.
func NewLiveResources(initial []config.Resource) *LiveResources {
	l := &LiveResources{ready: make(chan struct{})}
	l.Set(initial)
	return l
}

// Set replaces the resources. A resource whose definition did not change keeps its
// identity (the proxy keys per-resource caches on it).
func (l *LiveResources) Set(rs []config.Resource) {
	old := l.m.Load()
	m := make(map[string]*config.Resource, len(rs))
	for i := range rs {
		r := rs[i]
		if old != nil {
			if prev, ok := (*old)[r.Name]; ok && sameResource(prev, &r) {
				m[r.Name] = prev
				continue
			}
		}
		m[r.Name] = &r
	}
	l.m.Store(&m)
}

func sameResource(a, b *config.Resource) bool {
	x, _ := yaml.Marshal(a)
	y, _ := yaml.Marshal(b)
	return string(x) == string(y)
}

// Resource returns the resource named name.
func (l *LiveResources) Resource(name string) (*config.Resource, bool) {
	r, ok := (*l.m.Load())[name]
	return r, ok
}

// Names returns the resource names in force.
func (l *LiveResources) Names() []string {
	m := *l.m.Load()
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Record publishes the policy.changed event of a change to GH_AUDIT: a one-event record of
// its own (sequence 1, hash-chained from nothing), on gh.audit._config.<id>.policy.changed.
func Record(ctx context.Context, js jetstream.JetStream, c Change, who schemas.Identity, source string, revision uint64) error {
	payload := &schemas.PolicyChanged{Kind: c.Kind, Name: c.Name, Action: c.Action, Diff: c.Diff, Source: source}
	ev := schemas.Event{Type: schemas.TypePolicyChanged, Identity: who, PolicyRevision: revision, Payload: payload.AppendJSON(nil)}
	if err := bus.RecordControl(ctx, js, ev); err != nil {
		return fmt.Errorf("%s %s: %w", c.Kind, c.Name, err)
	}
	return nil
}

// All returns the resources in force, by name: read only (a change replaces the map; it
// is never changed in place, so a caller may key a cache on its identity).
func (l *LiveResources) All() map[string]*config.Resource { return *l.m.Load() }

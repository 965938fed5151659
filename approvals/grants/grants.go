// Package grants keeps time-boxed grants: a role on a resource for an identity, until an
// expiry, stored in KV bucket gh_grants once its approval is approved. The policy service
// gives each identity's grants to CEL rules (`grants`); at expiry the grant is removed and,
// as its role says, a revocation ends the sessions that used it.
package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/services/bus"
)

// Grant is one grant in force.
type Grant struct {
	ID         string    `json:"id"` // the approval's id
	Subject    string    `json:"subject"`
	Resource   string    `json:"resource"`
	Role       string    `json:"role"`
	Expires    time.Time `json:"expires"`
	ApprovedBy []string  `json:"approved_by"`
	Reason     string    `json:"reason,omitempty"`
	OnExpiry   string    `json:"on_expiry"` // end_sessions or next_statement
}

// Store is the gh_grants bucket.
type Store struct{ kv jetstream.KeyValue }

// Open creates the bucket if needed.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	var kv jetstream.KeyValue
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.BucketGrants, History: 8, Storage: jetstream.FileStorage}); err == nil {
			return &Store{kv: kv}, nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	return nil, fmt.Errorf("KV bucket %s: %w", bus.BucketGrants, err)
}

// Create stores a grant; false when it exists already (created by another copy).
func (s *Store) Create(ctx context.Context, g Grant) (bool, error) {
	b, _ := json.Marshal(g)
	if _, err := s.kv.Create(ctx, g.ID, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return false, fmt.Errorf("store grant %s: %w", g.ID, err)
	}
	return true, nil
}

// Delete removes a grant.
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.kv.Delete(ctx, id)
}

// List returns every grant stored.
func (s *Store) List(ctx context.Context) ([]Grant, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []Grant
	for k := range lister.Keys() {
		e, err := s.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var g Grant
		if json.Unmarshal(e.Value(), &g) == nil {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b Grant) int { return a.Expires.Compare(b.Expires) })
	return out, nil
}

// Live is a watched view of the grants, for the policy service.
type Live struct {
	mu         sync.RWMutex
	byID       map[string]Grant
	generation uint64 // changes with every grant change
}

// Watch follows the bucket until ctx ends, calling changed after each change (and once
// the initial values are in).
func (s *Store) Watch(ctx context.Context, changed func(*Live)) (*Live, error) {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return nil, err
	}
	l := &Live{byID: map[string]Grant{}}
	ready := make(chan struct{})
	go func() {
		defer w.Stop()
		initial := true
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					initial = false
					close(ready)
					if changed != nil {
						changed(l)
					}
					continue
				}
				l.mu.Lock()
				l.generation = e.Revision()
				if e.Operation() != jetstream.KeyValuePut {
					delete(l.byID, e.Key())
				} else {
					var g Grant
					if json.Unmarshal(e.Value(), &g) == nil {
						l.byID[e.Key()] = g
					}
				}
				l.mu.Unlock()
				if !initial && changed != nil {
					changed(l)
				}
			}
		}
	}()
	select {
	case <-ready:
		return l, nil
	case <-time.After(30 * time.Second):
		return nil, errors.New("grants not loaded within 30s")
	}
}

// For returns the grants of subject on resource in force at now.
func (l *Live) For(subject, resource string, now time.Time) []Grant {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []Grant
	for _, g := range l.byID {
		if g.Subject == subject && (g.Resource == resource || g.Resource == "*") && now.Before(g.Expires) {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b Grant) int { return a.Expires.Compare(b.Expires) })
	return out
}

// Generation changes whenever a grant is created or removed.
func (l *Live) Generation() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.generation
}

// NextExpiry is the earliest expiry after now (zero when none).
func (l *Live) NextExpiry(now time.Time) time.Time {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var next time.Time
	for _, g := range l.byID {
		if g.Expires.After(now) && (next.IsZero() || g.Expires.Before(next)) {
			next = g.Expires
		}
	}
	return next
}

// Package catalogs keeps the catalog of every PostgreSQL resource (schemas.Catalog) in KV
// bucket gh_catalogs, one key per resource: the proxy that reads a database's catalog puts
// it here, and the policy service resolves statements against it.
package catalogs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
)

// maxDecoded bounds a catalog's decoded size.
const maxDecoded = 64 << 20

// Store is the gh_catalogs bucket.
type Store struct {
	kv jetstream.KeyValue

	mu   sync.Mutex
	last map[string]string // resource → version last put by this process
}

// Open creates the bucket if needed.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	var kv jetstream.KeyValue
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.BucketCatalogs, History: 1,
			Storage: jetstream.FileStorage, MaxValueSize: 16 << 20}); err == nil {
			return &Store{kv: kv, last: map[string]string{}}, nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	return nil, fmt.Errorf("KV bucket %s: %w", bus.BucketCatalogs, err)
}

// PutCatalog stores c under its resource's name, S2-compressed, unless this process put
// the same version last.
func (s *Store) PutCatalog(ctx context.Context, c *schemas.Catalog) error {
	s.mu.Lock()
	same := s.last[c.Resource] == c.Version
	s.mu.Unlock()
	if same {
		return nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, key(c.Resource), s2.Encode(nil, b)); err != nil {
		return fmt.Errorf("put catalog of %s: %w", c.Resource, err)
	}
	s.mu.Lock()
	s.last[c.Resource] = c.Version
	s.mu.Unlock()
	return nil
}

// Get reads the catalog of a resource (nil, nil when there is none).
func (s *Store) Get(ctx context.Context, resource string) (*schemas.Catalog, error) {
	e, err := s.kv.Get(ctx, key(resource))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get catalog of %s: %w", resource, err)
	}
	return Decode(e.Value())
}

// Decode reads a stored catalog.
func Decode(v []byte) (*schemas.Catalog, error) {
	n, err := s2.DecodedLen(v)
	if err != nil || n > maxDecoded {
		return nil, fmt.Errorf("catalog: not an S2 block of at most %d bytes", maxDecoded)
	}
	b, err := s2.Decode(nil, v)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var c schemas.Catalog
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return &c, nil
}

// Watch calls fn with every catalog stored now and every one stored later, until ctx ends.
// It returns once the current ones have been given.
func (s *Store) Watch(ctx context.Context, fn func(*schemas.Catalog), onError func(error)) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", bus.BucketCatalogs, err)
	}
	ready := make(chan struct{})
	go func() {
		defer w.Stop()
		initial := true
		for {
			select {
			case <-ctx.Done():
				if initial {
					close(ready)
				}
				return
			case e, ok := <-w.Updates():
				if !ok {
					if initial {
						close(ready)
					}
					return
				}
				if e == nil {
					if initial {
						initial = false
						close(ready)
					}
					continue
				}
				if e.Operation() != jetstream.KeyValuePut {
					continue
				}
				c, err := Decode(e.Value())
				if err != nil {
					onError(fmt.Errorf("key %s: %w", e.Key(), err))
					continue
				}
				fn(c)
			}
		}
	}()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// key is the KV key of a resource (resource names are restricted to what a key allows by
// config validation).
func key(resource string) string { return resource }

package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketGateways holds a key per live gateway process (its boot id), refreshed while it
// runs and lapsing after the bucket's MaxAge once it stops: sessions whose gateway's key
// is gone were cut, not ended.
const BucketGateways = "gh_gateways"

// GatewayInfo is the value of a gateway's key.
type GatewayInfo struct {
	Started time.Time `json:"started"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
}

// OpenGateways opens the gh_gateways bucket, whose keys lapse timeout after their last
// refresh.
func OpenGateways(ctx context.Context, js jetstream.JetStream, timeout time.Duration) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketGateways, History: 1, TTL: timeout, Storage: jetstream.FileStorage}); err == nil {
			return kv, nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	return nil, fmt.Errorf("KV bucket %s: %w", BucketGateways, err)
}

// Alive reports whether the gateway with boot id id is alive (its key is in gh_gateways).
// An id that cannot be a key (empty, a space, a wildcard: a forged or damaged
// session.start) names no live gateway.
func Alive(ctx context.Context, kv jetstream.KeyValue, id string) (bool, error) {
	_, err := kv.Get(ctx, id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted), errors.Is(err, jetstream.ErrInvalidKey):
		return false, nil
	}
	return false, err
}

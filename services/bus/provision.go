package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Who creates the streams and buckets. In a trial every component creates (and updates)
// what it uses, idempotently, at start. In production the components' credentials are
// least-privilege: a proxy that could update GH_AUDIT could also shrink its limits and so
// delete the audit trail. There, one provisioning step with its own credentials
// (`gatehouse nats provision`, e.g. a deploy job) creates and updates every stream and
// bucket, and the components bind to them (nats.streams: bind): what a create call would
// have made is then looked up, and its absence is an error that says to provision.
//
// provisioner is that switch, and the one place where the replica count is applied: it is
// the JetStream every component gets from the Bus, so the call sites (desired, grants,
// catalogs, gateways, the console's buckets, locks, revocations) keep saying what they
// need, and neither replicas nor binding is repeated at each of them.

// ErrNotProvisioned is returned, with Bind, for a stream or bucket that does not exist.
var ErrNotProvisioned = errors.New("not provisioned")

// ErrDenied is returned when a create was refused or went unanswered because the
// credentials do not allow it.
var ErrDenied = errors.New("these NATS credentials may not create or update streams")

const provisionHint = "run `gatehouse nats provision` with the provisioning credentials, and set nats.streams: bind in the components' config"

type provisioner struct {
	jetstream.JetStream
	replicas int
	bind     bool
	denied   *violations
}

// violations passes the server's permission violations on JetStream's API (which the
// server reports apart from the request, which is then never answered) to the creates
// waiting for an answer, so that a refused create fails at once, not at its deadline.
type violations struct {
	mu      sync.Mutex
	waiters map[chan struct{}]bool
}

func (v *violations) notify(err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "$JS.API.") {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for ch := range v.waiters {
		close(ch)
		delete(v.waiters, ch)
	}
}

// guard runs call with a context that ends when a violation is reported meanwhile.
func guard[T any](p *provisioner, ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	ch := make(chan struct{})
	p.denied.mu.Lock()
	if p.denied.waiters == nil {
		p.denied.waiters = map[chan struct{}]bool{}
	}
	p.denied.waiters[ch] = true
	p.denied.mu.Unlock()
	defer func() {
		p.denied.mu.Lock()
		delete(p.denied.waiters, ch)
		p.denied.mu.Unlock()
	}()
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-ch:
			cancel(ErrDenied)
		case <-cctx.Done():
		}
	}()
	v, err := call(cctx)
	if err != nil && errors.Is(context.Cause(cctx), ErrDenied) {
		return v, fmt.Errorf("%w: %s", ErrDenied, provisionHint)
	}
	return v, p.explain(err)
}

// CreateOrUpdateStream creates or updates cfg with the bus's replicas, or binds to it.
func (p *provisioner) CreateOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if p.bind {
		return p.bindStream(ctx, cfg.Name)
	}
	cfg.Replicas = p.replicas
	return guard(p, ctx, func(ctx context.Context) (jetstream.Stream, error) { return p.JetStream.CreateOrUpdateStream(ctx, cfg) })
}

// CreateStream creates cfg with the bus's replicas, or binds to it.
func (p *provisioner) CreateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if p.bind {
		return p.bindStream(ctx, cfg.Name)
	}
	cfg.Replicas = p.replicas
	return guard(p, ctx, func(ctx context.Context) (jetstream.Stream, error) { return p.JetStream.CreateStream(ctx, cfg) })
}

// UpdateStream updates cfg with the bus's replicas; with Bind it is refused.
func (p *provisioner) UpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if p.bind {
		return nil, errors.New("nats.streams is bind: streams are changed by `gatehouse nats provision`")
	}
	cfg.Replicas = p.replicas
	return guard(p, ctx, func(ctx context.Context) (jetstream.Stream, error) { return p.JetStream.UpdateStream(ctx, cfg) })
}

// CreateOrUpdateKeyValue creates or updates cfg with the bus's replicas, or binds to it.
func (p *provisioner) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if p.bind {
		return p.bindKV(ctx, cfg.Bucket)
	}
	cfg.Replicas = p.replicas
	return guard(p, ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		return p.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
	})
}

// CreateKeyValue creates cfg with the bus's replicas, or binds to it.
func (p *provisioner) CreateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if p.bind {
		return p.bindKV(ctx, cfg.Bucket)
	}
	cfg.Replicas = p.replicas
	return guard(p, ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return p.JetStream.CreateKeyValue(ctx, cfg) })
}

// UpdateKeyValue updates cfg with the bus's replicas; with Bind it is refused.
func (p *provisioner) UpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if p.bind {
		return nil, errors.New("nats.streams is bind: buckets are changed by `gatehouse nats provision`")
	}
	cfg.Replicas = p.replicas
	return guard(p, ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return p.JetStream.UpdateKeyValue(ctx, cfg) })
}

func (p *provisioner) bindStream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := p.JetStream.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotProvisioned, provisionHint)
	}
	return s, err
}

func (p *provisioner) bindKV(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	kv, err := p.JetStream.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotProvisioned, provisionHint)
	}
	return kv, err
}

// explain turns a create that the server refused for want of permission (or that went
// unanswered because NATS dropped the request as a permissions violation) into ErrDenied
// with what to do.
func (p *provisioner) explain(err error) error {
	if err == nil {
		return nil
	}
	last := p.Conn().LastError()
	var apiErr *jetstream.APIError
	denied := errors.As(err, &apiErr) && apiErr.Code == 403 ||
		(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)) &&
			last != nil && errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), "$JS.API.")
	if denied {
		return fmt.Errorf("%w (%v): %s", ErrDenied, err, provisionHint)
	}
	return err
}

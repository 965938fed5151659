package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrLeaseHeld is returned by Lease.Do while another holder keeps the lease alive.
var ErrLeaseHeld = errors.New("held by another holder")

// Lease is a key in the locks bucket that one holder at a time keeps while it works (a
// schema migration among several ingest copies). The holder renews it every TTL/4; a key
// whose revision has not changed for TTL, as this Lease observed it on its own clock, is
// taken over (its holder died). Staleness is judged from observed revisions, not from
// timestamps, so clock skew between machines does not matter.
type Lease struct {
	KV         jetstream.KeyValue
	Key, Owner string
	TTL        time.Duration

	seenRev uint64
	seenAt  time.Time
}

// Do runs fn while holding the lease, and releases it afterwards. fn's context is
// cancelled if the lease is lost: a renewal found another holder, or no renewal went
// through for half a TTL (a taker waits a whole one). When another holder's
// lease is alive, Do returns ErrLeaseHeld at once without running fn: call it again later.
func (l *Lease) Do(ctx context.Context, fn func(context.Context) error) error {
	val := []byte(l.Owner)
	rev, err := l.KV.Create(ctx, l.Key, val)
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := l.KV.Get(ctx, l.Key)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound): // released meanwhile
			return fmt.Errorf("lease %s: %w (released just now; try again)", l.Key, ErrLeaseHeld)
		case gerr != nil:
			return fmt.Errorf("lease %s: %w", l.Key, gerr)
		}
		if e.Revision() != l.seenRev {
			l.seenRev, l.seenAt = e.Revision(), time.Now()
		}
		if time.Since(l.seenAt) < l.TTL {
			return fmt.Errorf("lease %s: %w %q", l.Key, ErrLeaseHeld, e.Value())
		}
		// Not renewed for a TTL: its holder is gone. Take it over (one taker wins).
		if rev, err = l.KV.Update(ctx, l.Key, val, e.Revision()); err != nil {
			return fmt.Errorf("lease %s: %w (taking over a stale lease of %q failed: %v)", l.Key, ErrLeaseHeld, e.Value(), err)
		}
	} else if err != nil {
		return fmt.Errorf("lease %s: %w", l.Key, err)
	}

	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop, renewed := make(chan struct{}), make(chan uint64)
	go func() {
		t := time.NewTicker(max(l.TTL/4, 10*time.Millisecond))
		defer t.Stop()
		cur, renewedAt := rev, time.Now()
		defer func() { renewed <- cur }()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				r, err := l.KV.Update(hctx, l.Key, val, cur)
				switch {
				case err == nil:
					cur, renewedAt = r, time.Now()
				case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) || isWrongSequence(err):
					cancel(fmt.Errorf("lease %s lost: another holder took it", l.Key))
					return
				case time.Since(renewedAt) >= l.TTL/2:
					// Cut off from NATS: a taker may take the lease once it has seen it
					// unrenewed for a TTL, so stop well before (this holder's work must not
					// overlap the taker's).
					cancel(fmt.Errorf("lease %s lost: not renewed for %v (%v)", l.Key, time.Since(renewedAt).Round(time.Millisecond), err))
					return
				}
				// Other errors (NATS unreachable a moment): try again at the next tick.
			}
		}
	}()
	err = fn(hctx)
	close(stop)
	cur := <-renewed
	if cause := context.Cause(hctx); cause != nil && ctx.Err() == nil { // lost, not cancelled by the caller
		err = errors.Join(cause, err)
	}
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer dcancel()
	_ = l.KV.Delete(dctx, l.Key, jetstream.LastRevision(cur)) // a taker's lease is not ours to delete
	return err
}

// isWrongSequence is the JetStream error of an update whose expected revision is not the
// key's last one.
func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

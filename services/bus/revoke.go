package bus

// Revocations end access now: the state of each revoked target (an identity, a session, a
// grant) is published on stream GH_REVOKE, the latest per target kept; whoever acts on
// them (every proxy's session registry, the approvals' grants, the revocations API) follows
// the stream from its start, so that one that starts later knows them too.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/schemas"
)

// EnsureRevokeStream creates GH_REVOKE.
func EnsureRevokeStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: schemas.StreamRevoke, Subjects: []string{schemas.SubjectRevoke + ".>"},
		Storage: jetstream.FileStorage, MaxMsgsPerSubject: 1, Discard: jetstream.DiscardOld})
	if err != nil {
		return fmt.Errorf("stream %s: %w", schemas.StreamRevoke, err)
	}
	return nil
}

// PublishRevocation writes a revocation (or its lifting) and records it in the audit
// trail, with who as the revoker.
func PublishRevocation(ctx context.Context, js jetstream.JetStream, r schemas.RevocationState, who schemas.Identity) error {
	if err := EnsureRevokeStream(ctx, js); err != nil {
		return err
	}
	b, _ := json.Marshal(r)
	if _, err := js.Publish(ctx, schemas.RevocationSubject(r.Kind, r.Value), b); err != nil {
		return fmt.Errorf("publish revocation: %w", err)
	}
	p := &schemas.Revocation{Kind: r.Kind, Value: r.Value, Reason: r.Reason, Lifted: r.Lifted}
	if !r.Until.IsZero() {
		p.Until = r.Until.UTC().Format(time.RFC3339)
	}
	return RecordControl(ctx, js, schemas.Event{Type: schemas.TypeRevocation, Identity: who, Payload: p.AppendJSON(nil)})
}

// Revocations are the revocations in force, as followed from GH_REVOKE.
type Revocations struct {
	mu    sync.RWMutex
	byKey map[string]schemas.RevocationState
}

// FollowRevocations replays GH_REVOKE and keeps following it until ctx ends; onRevoke, when
// set, is called for every revocation that comes into force after the replay (not during
// it: no session is open then). It returns once the replay is done: a proxy calls it
// before it admits a session.
func FollowRevocations(ctx context.Context, js jetstream.JetStream, log *slog.Logger, onRevoke func(schemas.RevocationState)) (*Revocations, error) {
	if err := EnsureRevokeStream(ctx, js); err != nil {
		return nil, err
	}
	r := &Revocations{byKey: map[string]schemas.RevocationState{}}
	cons, err := js.OrderedConsumer(ctx, schemas.StreamRevoke, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy, FilterSubjects: []string{schemas.SubjectRevoke + ".>"}})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", schemas.StreamRevoke, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	var once sync.Once
	if info.NumPending == 0 {
		once.Do(func() { close(ready) })
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var rv schemas.RevocationState
		if err := json.Unmarshal(m.Data(), &rv); err != nil {
			log.Error("unreadable revocation ignored", "subject", m.Subject(), "err", err)
		} else {
			r.mu.Lock()
			r.byKey[rv.Key()] = rv
			r.mu.Unlock()
			select {
			case <-ready:
				if onRevoke != nil && rv.Active(time.Now()) {
					onRevoke(rv)
				}
			default:
			}
		}
		if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
			once.Do(func() { close(ready) })
		}
	})
	if err != nil {
		return nil, err
	}
	go func() { <-ctx.Done(); cc.Stop() }()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		cc.Stop()
		return nil, errors.New("revocations not replayed within 30s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r, nil
}

// Check returns the revocation in force for any of the targets of kind, if one is.
func (r *Revocations) Check(now time.Time, kind string, values ...string) (schemas.RevocationState, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, v := range values {
		if rv, ok := r.byKey[kind+":"+v]; ok && rv.Active(now) {
			return rv, true
		}
	}
	return schemas.RevocationState{}, false
}

// List returns the revocations in force, the latest first.
func (r *Revocations) List(now time.Time) []schemas.RevocationState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []schemas.RevocationState
	for _, rv := range r.byKey {
		if rv.Active(now) {
			out = append(out, rv)
		}
	}
	slices.SortFunc(out, func(a, b schemas.RevocationState) int { return b.At.Compare(a.At) })
	return out
}

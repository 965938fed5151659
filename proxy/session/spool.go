package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
)

// OpenSpool gives the publisher its crash-safe journal in dir and first publishes what a
// previous process left there (killed, crashed: events its clients may have seen answered
// that JetStream never acknowledged). It returns once JetStream has acknowledged all of it,
// so call it before the proxies serve and before the previous boot's gateway key is
// removed (the sweeper must not end those sessions before their last events are in).
func (p *Publisher) OpenSpool(ctx context.Context, dir string) (replayed int, err error) {
	if p.journal != nil {
		return 0, errors.New("audit spool already open")
	}
	j, old, err := openJournal(dir, p.log)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	tails := tails{}
	for _, path := range old {
		recs, dropped, err := readSegment(path)
		if err != nil {
			j.close()
			return replayed, err
		}
		if dropped > 0 {
			// The last write of a process killed mid-write: never acknowledged to a client.
			p.log.Warn("audit spool segment ends in a torn record; its bytes are dropped", "segment", path, "bytes", dropped)
		}
		seg := &segment{j: j, path: path}
		seg.written.Store(int64(len(recs)))
		wg.Add(1)
		seg.removed = wg.Done
		for _, r := range recs {
			tails.add(r.data)
			pe := &pending{subject: r.subject, id: r.id, data: r.data, size: int64(len(r.data)), segs: []segRef{{seg, 1}}}
			if err := p.enqueueReplay(ctx, pe); err != nil {
				j.close()
				return replayed, err
			}
			replayed++
		}
		seg.seal() // removed at once when it held nothing
	}
	if replayed > 0 {
		p.log.Info("publishing the events a previous process left in the audit spool", "messages", replayed, "dir", dir)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		j.close()
		return replayed, fmt.Errorf("audit spool: JetStream has not acknowledged the %d messages left by the previous process (they stay in %s): %w", replayed, dir, ctx.Err())
	}
	if err := p.attest(ctx, tails); err != nil {
		j.close()
		return replayed, err
	}
	p.journal = j
	return replayed, nil
}

// tails are, by session, the last event a dead process's journal held, and whether the
// session's end was among them.
type tails map[string]*tail

type tail struct {
	last  schemas.Event
	ended bool
}

func (t tails) add(data []byte) {
	for len(data) > 0 {
		line := data
		data = nil
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line, data = line[:i], line[i+1:]
		}
		var e schemas.Event
		if len(line) == 0 || schemas.UnmarshalEvent(line, &e) != nil || e.SessionID == "" || e.Type == schemas.TypeSessionAttested {
			continue
		}
		s := t[e.SessionID]
		if s == nil {
			s = &tail{}
			t[e.SessionID] = s
		}
		s.ended = s.ended || e.Type == schemas.TypeSessionEnd
		if e.Seq >= s.last.Seq {
			e.Payload = nil
			s.last = e
		}
	}
}

// attest signs, for each session the dead process left in the journal without an end,
// its events up to the last one there (session.attested, outside the chain), and waits for
// JetStream to take it. The sweeper may have ended such a session while the process was
// down (its key lapsed): the events the journal held then continue the chain past that
// end, and only the gateway's signature lets them supersede it (seal.Supersede). Without
// an audit key there is nothing to sign (the process seals nothing either).
func (p *Publisher) attest(ctx context.Context, t tails) error {
	if p.sealKey == nil {
		return nil
	}
	n := 0
	for id, s := range t {
		if s.ended || s.last.Seq == 0 {
			continue
		}
		a := p.sealKey.Attest(id, s.last.Seq, s.last.Hash)
		e := schemas.Event{ID: uuid.Must(uuid.NewV7()).String(), Type: a.EventType(), Code: schemas.Codes[a.EventType()], Time: time.Now().UTC().Truncate(time.Microsecond),
			SessionID: id, Resource: s.last.Resource, Identity: s.last.Identity, PolicyRevision: s.last.PolicyRevision, Payload: a.AppendJSON(nil)}
		h, err := e.ComputeHash()
		if err != nil {
			return err
		}
		e.Hash = h
		m := nats.NewMsg(bus.AuditSubject(e.Resource, id, e.Type))
		m.Data = e.AppendJSON(nil)
		// Its own id as the message id: not one anybody could take first (a second
		// attestation of the same events, after a crash right here, is harmless).
		m.Header.Set(jetstream.MsgIDHeader, e.ID)
		if _, err := p.js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("audit spool: attest session %s of the previous process: %w", id, err)
		}
		n++
	}
	if n > 0 {
		p.log.Info("the previous process's sessions left in the spool without an end are attested", "sessions", n)
	}
	return nil
}

// enqueueReplay waits for room in the spool as long as ctx allows: a previous process may
// have left more than the spool holds at once.
func (p *Publisher) enqueueReplay(ctx context.Context, pe *pending) error {
	for {
		err := p.enqueue(pe)
		if !errors.Is(err, ErrSpoolFull) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("audit spool replay: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

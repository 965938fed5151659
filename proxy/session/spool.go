package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
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
	p.journal = j
	return replayed, nil
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

package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Accept takes connections on ln until ctx ends (then it closes ln and returns nil), handing
// each to admit on the accepting goroutine: admit decides at once (limits) and starts the
// connection's own goroutine. A temporary accept error (too many open files) is retried.
func Accept(ctx context.Context, ln net.Listener, admit func(net.Conn)) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		admit(c)
	}
}

// Drain waits until wg is done (every session of a proxy ended), or ctx ends.
func Drain(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

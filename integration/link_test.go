package integration

import (
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// link is a TCP relay the test controls, put between a process and a server (a proxy and
// NATS): Cut drops every connection through it and refuses new ones, as a lost route
// does for a client that notices (a reset); Stall passes no byte either way but keeps the
// connections open, as a partition that drops packets does (nobody notices but by
// timeouts); Restore lets bytes through again.
type link struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	cut     bool
	stalled chan struct{} // closed when the link is not stalled
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

// newLink relays 127.0.0.1:<free port> to target until the test ends.
func newLink(t *testing.T, target string) *link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := &link{ln: ln, target: target, conns: map[net.Conn]bool{}, stalled: make(chan struct{})}
	close(l.stalled)
	l.wg.Add(1)
	go l.accept()
	t.Cleanup(func() {
		ln.Close()
		l.Cut()
		l.Restore() // what a stall holds is let go, to closed connections
		l.wg.Wait()
	})
	return l
}

// Addr is the relay's address: what the process connects to.
func (l *link) Addr() string { return l.ln.Addr().String() }

// Cut closes every connection through the link and refuses new ones until Restore.
func (l *link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	for c := range l.conns {
		c.Close()
	}
}

// Stall holds every byte, both ways, until Restore.
func (l *link) Stall() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.stalled:
		l.stalled = make(chan struct{})
	default:
	}
}

// Restore lets connections and bytes through again.
func (l *link) Restore() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = false
	select {
	case <-l.stalled:
	default:
		close(l.stalled)
	}
}

// open counts the connections through the link (both ends of each).
func (l *link) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// gate returns once the link is not stalled.
func (l *link) gate() {
	l.mu.Lock()
	ch := l.stalled
	l.mu.Unlock()
	<-ch
}

// pipe copies from src to dst, holding what it read while the link is stalled.
func (l *link) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			l.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (l *link) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.relay(c)
		}()
	}
}

// relay copies both ways between c and a new connection to the target.
func (l *link) relay(c net.Conn) {
	defer c.Close()
	if !l.track(c) {
		return
	}
	defer l.untrack(c)
	up, err := net.Dial("tcp", l.target)
	if err != nil {
		return
	}
	defer up.Close()
	if !l.track(up) {
		return
	}
	defer l.untrack(up)
	done := make(chan struct{}, 2)
	go func() { l.pipe(up, c); done <- struct{}{} }()
	go func() { l.pipe(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	<-done
}

// track registers c unless the link is cut.
func (l *link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		return false
	}
	l.conns[c] = true
	return true
}

func (l *link) untrack(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// TestLink checks the relay: bytes pass, a cut ends the connection and refuses new
// ones, a stall holds bytes without ending anything, a restore lets them through again.
func TestLink(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	l := newLink(t, echo.Addr().String())
	roundTrip := func() error {
		c, err := net.Dial("tcp", l.Addr())
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		b := make([]byte, 4)
		_, err = io.ReadFull(c, b)
		return err
	}
	require.NoError(t, roundTrip())
	c, err := net.Dial("tcp", l.Addr())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 1))
	require.NoError(t, err)
	l.Cut()
	_, err = io.ReadFull(c, make([]byte, 1))
	require.Error(t, err, "a cut ends the connection")
	require.Error(t, roundTrip(), "a cut link lets nothing through")
	l.Restore()
	require.NoError(t, roundTrip())

	c, err = net.Dial("tcp", l.Addr())
	require.NoError(t, err)
	defer c.Close()
	l.Stall()
	_, err = c.Write([]byte("y"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	_, err = io.ReadFull(c, make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "a stalled link passes nothing")
	l.Restore()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	b := make([]byte, 1)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err, "what was held passes once restored")
	require.Equal(t, "y", string(b))
}

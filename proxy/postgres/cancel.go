package postgres

import (
	"crypto/subtle"
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// cancelRegistry maps the cancel keys given to clients (real backend PID, proxy-generated
// secret) to the backend's own key, so that a client's CancelRequest reaches the right
// backend and a forged one does nothing.
type cancelRegistry struct {
	mu   sync.Mutex
	keys map[uint32][]*cancelKey // by backend PID
}

type cancelKey struct {
	pid           uint32
	clientSecret  [4]byte
	backendAddr   string
	backendSecret []byte
	// hold, while a statement waits for approval in the proxy, takes the cancel instead of
	// the backend (which runs nothing for it).
	hold atomic.Pointer[func()]
}

func (k *cancelKey) setHold(f func()) {
	if f == nil {
		k.hold.Store(nil)
		return
	}
	k.hold.Store(&f)
}

func newCancelRegistry() *cancelRegistry { return &cancelRegistry{keys: map[uint32][]*cancelKey{}} }

func (r *cancelRegistry) add(pid, clientSecret uint32, addr string, backendSecret []byte) *cancelKey {
	k := &cancelKey{pid: pid, backendAddr: addr, backendSecret: backendSecret}
	binary.BigEndian.PutUint32(k.clientSecret[:], clientSecret)
	r.mu.Lock()
	r.keys[pid] = append(r.keys[pid], k)
	r.mu.Unlock()
	return k
}

func (r *cancelRegistry) remove(k *cancelKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.keys[k.pid]
	for i, x := range l {
		if x == k {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(r.keys, k.pid)
	} else {
		r.keys[k.pid] = l
	}
}

func (r *cancelRegistry) lookup(pid uint32, secret []byte) *cancelKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found *cancelKey
	for _, k := range r.keys[pid] {
		// Constant time: the secret is what stops anyone from cancelling others' queries.
		if subtle.ConstantTimeCompare(k.clientSecret[:], secret) == 1 {
			found = k
		}
	}
	return found
}

// cancel handles a CancelRequest body (after the code): PID and secret.
func (s *Server) cancel(body []byte) {
	if len(body) < 8 {
		return
	}
	pid := binary.BigEndian.Uint32(body[:4])
	k := s.cancels.lookup(pid, body[4:])
	if k == nil {
		s.log.Info("cancel request with an unknown key ignored", "pid", pid)
		return
	}
	if h := k.hold.Load(); h != nil {
		(*h)()
		return
	}
	s.cancelBackend(k)
}

// cancelBackend sends the backend its own CancelRequest for the session of k.
func (s *Server) cancelBackend(k *cancelKey) {
	if h := k.hold.Load(); h != nil {
		(*h)() // a statement held for approval: nothing runs on the backend
		return
	}
	c, err := net.DialTimeout("tcp", k.backendAddr, 5*time.Second)
	if err != nil {
		s.log.Warn("cancel: cannot reach backend", "addr", k.backendAddr, "err", err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	msg, _ := (&pgproto3.CancelRequest{ProcessID: k.pid, SecretKey: k.backendSecret}).Encode(nil)
	_, _ = c.Write(msg)
	// The backend closes the connection once it has the request.
	var b [1]byte
	_, _ = c.Read(b[:])
}

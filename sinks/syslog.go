package sinks

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// Syslog sends each event as one RFC 5424 message over TCP, framed by octet counting
// (RFC 6587, as RFC 5425 requires for TLS), with TLS when TLS is set:
//
//	<PRI>1 TIMESTAMP HOSTNAME gatehouse - MSGID - {event JSON}
//
// PRI is the facility with a severity by event (warning for refused statements and failed
// logins, notice for approvals, grants, revocations, terminations and changes, info for the
// rest), TIMESTAMP the event's time in UTC with microseconds, MSGID the event type. TCP has
// no application-level acknowledgement: a batch counts as taken once written; after a
// broken connection the whole batch is sent again, so a receiver may see an event twice
// (its id tells them apart) but never misses one.
type Syslog struct {
	Address  string      // host:port
	TLS      *tls.Config // nil: plain TCP
	Facility int
	Hostname string
	// MaxMessage bounds one syslog message; a bigger event is sent as a stub with its id,
	// type, session and size, so the receiver knows it exists (default 64 KiB).
	MaxMessage int
	Dial       func(ctx context.Context, network, addr string) (net.Conn, error) // tests

	mu   sync.Mutex
	conn net.Conn
}

// Describe names the destination.
func (s *Syslog) Describe() string {
	if s.TLS != nil {
		return "syslog+tls://" + s.Address
	}
	return "syslog://" + s.Address
}

// Deliver writes b's events, connecting first if needed.
func (s *Syslog) Deliver(ctx context.Context, b *Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var buf bytes.Buffer
	var dec schemas.EventDecoder
	b.Events(func(ev []byte) { s.appendFrame(&buf, &dec, ev) })
	if s.conn != nil && !alive(s.conn) {
		s.conn.Close()
		s.conn = nil
	}
	if s.conn == nil {
		c, err := s.dial(ctx)
		if err != nil {
			return err
		}
		s.conn = c
	}
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = s.conn.SetWriteDeadline(deadline)
	if _, err := s.conn.Write(buf.Bytes()); err != nil {
		s.conn.Close()
		s.conn = nil
		return err
	}
	return nil
}

// alive says whether the receiver still has the connection open: a receiver never sends, so
// anything but a timeout on a short read means it closed (a write into a closed connection
// could still succeed locally and lose the batch).
func alive(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	_ = c.SetReadDeadline(time.Time{})
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}

// Close drops the connection.
func (s *Syslog) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

func (s *Syslog) dial(ctx context.Context) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.Dial != nil {
		return s.Dial(dctx, "tcp", s.Address)
	}
	if s.TLS != nil {
		return (&tls.Dialer{Config: s.TLS}).DialContext(dctx, "tcp", s.Address)
	}
	return (&net.Dialer{}).DialContext(dctx, "tcp", s.Address)
}

// Severities (RFC 5424, 6.2.1).
const (
	sevWarning = 4
	sevNotice  = 5
	sevInfo    = 6
)

func severity(e *schemas.Event) int {
	switch e.Type {
	case schemas.TypeAuthFailed:
		return sevWarning
	case schemas.TypeDecision:
		if bytes.Contains(e.Payload, []byte(`"effect":"deny"`)) {
			return sevWarning
		}
		return sevInfo
	case schemas.TypeSessionTerminated, schemas.TypeRevocation, schemas.TypePolicyChanged, schemas.TypeAuditRetention,
		schemas.TypeGrantCreated, schemas.TypeGrantExpired, schemas.TypeGrantRevoked, schemas.TypeApprovalRequested, schemas.TypeApprovalDecided,
		schemas.TypeApprovalExpired, schemas.TypeApprovalCancelled, schemas.TypeApprovalUsed:
		return sevNotice
	}
	return sevInfo
}

// appendFrame appends one octet-counted RFC 5424 message for ev.
func (s *Syslog) appendFrame(buf *bytes.Buffer, dec *schemas.EventDecoder, ev []byte) {
	var e schemas.Event
	msgID, ts, sev := "-", "-", sevInfo
	if dec.Unmarshal(ev, &e) == nil {
		msgID = headerField(e.Type, 32)
		if !e.Time.IsZero() {
			ts = e.Time.UTC().Format("2006-01-02T15:04:05.000000Z")
		}
		sev = severity(&e)
	}
	host := headerField(s.Hostname, 255)
	var msg []byte
	msg = append(msg, '<')
	msg = strconv.AppendInt(msg, int64(s.Facility*8+sev), 10)
	msg = append(msg, ">1 "...)
	msg = append(msg, ts...)
	msg = append(msg, ' ')
	msg = append(msg, host...)
	msg = append(msg, " gatehouse - "...)
	msg = append(msg, msgID...)
	msg = append(msg, " - "...)
	maxMsg := s.MaxMessage
	if maxMsg <= 0 {
		maxMsg = 64 << 10
	}
	if len(msg)+len(ev) > maxMsg {
		// A stub in the event's own terms, so the receiver knows what it did not get.
		msg = append(msg, `{"id":`...)
		msg = schemas.AppendJSONString(msg, e.ID)
		msg = append(msg, `,"type":`...)
		msg = schemas.AppendJSONString(msg, e.Type)
		msg = append(msg, `,"session_id":`...)
		msg = schemas.AppendJSONString(msg, e.SessionID)
		msg = append(msg, `,"seq":`...)
		msg = strconv.AppendUint(msg, e.Seq, 10)
		msg = append(msg, `,"truncated":true,"bytes":`...)
		msg = strconv.AppendInt(msg, int64(len(ev)), 10)
		msg = append(msg, '}')
	} else {
		msg = append(msg, ev...)
	}
	buf.WriteString(strconv.Itoa(len(msg)))
	buf.WriteByte(' ')
	buf.Write(msg)
}

// headerField makes v a valid header field: printable US-ASCII without spaces, at most n
// characters, "-" when empty (RFC 5424, 6.2).
func headerField(v string, n int) string {
	out := make([]byte, 0, min(len(v), n))
	for i := 0; i < len(v) && len(out) < n; i++ {
		if c := v[i]; c >= 33 && c <= 126 {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return string(out)
}

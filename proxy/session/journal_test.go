package session

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/services/seal"
)

type allow struct{}

func (allow) Decide(context.Context, *schemas.DecisionRequest) schemas.DecisionReply {
	return schemas.DecisionReply{Effect: schemas.EffectAllow, Revision: 1}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newJournaled(t *testing.T, js jetstream.JetStream, dir string) *Publisher {
	t.Helper()
	p := NewPublisher(js, PublisherOptions{Spool: 1000, Wait: time.Second, Linger: time.Hour}, prometheus.NewRegistry(), quiet)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := p.OpenSpool(ctx, dir)
	require.NoError(t, err)
	return p
}

// statements records n answered statements the way the PostgreSQL proxy does: Durable
// before the completion would go to the client.
func statements(t *testing.T, s *Session, n int) {
	ctx := context.Background()
	for i := range n {
		q := s.OnQuery(ctx, "select "+string(rune('a'+i%26)), "simple", "")
		require.True(t, q.Decision.Allowed(), q.Decision.Reason)
		r := s.NewResult(q)
		r.Columns([]schemas.Column{{Name: "v", TypeOID: 25}})
		r.Row([][]byte{[]byte("x")})
		r.Tag("SELECT 1")
		r.Done("ok")
		require.NoError(t, s.Durable(ctx))
	}
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, segmentPrefix+"*"+segmentSuffix))
	require.NoError(t, err)
	return m
}

// readTrail reads every event of a session from GH_AUDIT, deduplicated by id (the audit
// store keeps one event per id), in sequence order.
func readTrail(t *testing.T, b *bus.Bus, session string, want int) []schemas.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		c, err := b.JS.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.SubjectAudit + ".demo." + session + ".>"}})
		require.NoError(t, err)
		seen := map[string]bool{}
		bySeq := map[uint64]schemas.Event{}
		for {
			m, err := c.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
			if err != nil {
				break
			}
			data, err := bus.AuditData(m.Headers(), m.Data())
			require.NoError(t, err)
			for _, line := range bytes.Split(data, []byte{'\n'}) {
				var e schemas.Event
				require.NoError(t, json.Unmarshal(line, &e))
				if !seen[e.ID] && e.Type != schemas.TypeSessionAttested { // outside the chain
					seen[e.ID] = true
					bySeq[e.Seq] = e
				}
			}
		}
		if len(bySeq) >= want || ctx.Err() != nil {
			out := make([]schemas.Event, 0, len(bySeq))
			for i := uint64(1); i <= uint64(len(bySeq)); i++ {
				e, ok := bySeq[i]
				require.True(t, ok, "event %d of %d missing", i, len(bySeq))
				out = append(out, e)
			}
			require.GreaterOrEqual(t, len(out), want)
			return out
		}
	}
}

// A process whose JetStream never acknowledges anything dies (its journal's lock is let
// go, its goroutines never publish): every event of every statement it answered is in its
// journal, and the next process on the directory publishes them — a whole chain — before
// it serves, then removes the segments.
func TestJournalKeepsWhatADeadProcessAnswered(t *testing.T) {
	b := bustest.Connect(t)
	dir := t.TempDir()

	// The dead process: a NATS server without the audit stream, so nothing is acknowledged.
	nc, err := nats.Connect(bustest.StartServer(t))
	require.NoError(t, err)
	defer nc.Close()
	deadJS, err := jetstream.New(nc)
	require.NoError(t, err)
	dead := newJournaled(t, deadJS, dir)
	id := &identity.Identity{}
	id.Subject = "svc-orders"
	s := New(id, &config.Resource{Name: "demo", Type: "postgres", Audit: "buffered"}, dead, allow{}, Limits{ResultChunkBytes: 1024, MaxResultBytes: 4096, MaxSQLBytes: 64})
	require.NoError(t, s.Start(context.Background(), &schemas.SessionStart{Protocol: "postgres"}))
	statements(t, s, 100)
	require.NotEmpty(t, segments(t, dir))
	_ = dead.journal.lock.Close() // the process is gone: its lock with it

	// A record the dead process was writing when it died: torn, never acknowledged.
	seg := segments(t, dir)
	f, err := os.OpenFile(seg[len(seg)-1], os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{0x31, 0x53, 0x48, 0x47, 0xff, 0, 0, 0, 1, 2}, dead.journal.cur.size)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	next := newJournaled(t, b.JS, dir)
	defer next.Close(context.Background())
	evs := readTrail(t, b, s.ID, 1+100*4)
	require.Len(t, evs, 1+100*4, "session.start and four events per statement")
	require.NoError(t, schemas.VerifyChain(evs))
	require.Empty(t, segments(t, dir), "segments are removed once JetStream has them")
}

func TestJournalDirectoryIsLocked(t *testing.T) {
	b := bustest.Connect(t)
	dir := t.TempDir()
	p := newJournaled(t, b.JS, dir)
	defer p.Close(context.Background())
	other := NewPublisher(b.JS, PublisherOptions{Spool: 10}, prometheus.NewRegistry(), quiet)
	_, err := other.OpenSpool(context.Background(), dir)
	require.ErrorContains(t, err, "in use by another Gatehouse process")
}

// A journal on a full disk refuses: the statement whose events cannot be written has its
// completion withheld (Durable fails), and once there is room again statements run and
// nothing recorded is lost.
func TestJournalOnAFullDiskFailsClosed(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
		t.Skipf("cannot mount an 8 MiB tmpfs for the spool (needs root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	b := bustest.Connect(t)
	p := newJournaled(t, b.JS, dir)
	p.journal.segSize = 2 << 20
	id := &identity.Identity{}
	id.Subject = "svc-orders"
	s := New(id, &config.Resource{Name: "demo", Type: "postgres", Audit: "buffered"}, p, allow{}, Limits{ResultChunkBytes: 1024, MaxResultBytes: 4096, MaxSQLBytes: 64})
	require.NoError(t, s.Start(context.Background(), &schemas.SessionStart{Protocol: "postgres"}))
	statements(t, s, 3)

	// The disk fills up; the next record needs a new segment.
	filler := filepath.Join(dir, "filler")
	require.NoError(t, os.WriteFile(filler, make([]byte, 5<<20), 0o600))
	p.journal.mu.Lock()
	p.journal.cur.size = p.journal.segSize
	p.journal.mu.Unlock()
	q := s.OnQuery(context.Background(), "select 1", "simple", "")
	s.NewResult(q).Done("ok")
	require.ErrorContains(t, s.Durable(context.Background()), "no space left on device")
	_, err := (func() (*Session, error) {
		n := New(id, &config.Resource{Name: "demo", Type: "postgres", Audit: "buffered"}, p, allow{}, Limits{ResultChunkBytes: 1024})
		return n, n.Start(context.Background(), &schemas.SessionStart{Protocol: "postgres"})
	})()
	require.ErrorContains(t, err, "no space left on device", "no new session either")

	require.NoError(t, os.Remove(filler))
	statements(t, s, 3)
	require.NoError(t, s.End(context.Background(), "client_closed", nil, 0, 0))
	evs := readTrail(t, b, s.ID, 1+6*4+3+1) // the refused one has no result
	require.NoError(t, schemas.VerifyChain(evs))

	// Full for long: a session's statements are refused; what it records stops at a bound
	// (a batch that could never be written again was the chaos suite's finding); its end
	// is kept; once there is room, all of it is published and new statements run.
	long := New(id, &config.Resource{Name: "demo", Type: "postgres", Audit: "buffered"}, p, allow{}, Limits{ResultChunkBytes: 1024, MaxResultBytes: 4096, MaxSQLBytes: 64})
	require.NoError(t, long.Start(context.Background(), &schemas.SessionStart{Protocol: "postgres"}))
	require.NoError(t, os.WriteFile(filler, make([]byte, 5<<20), 0o600))
	p.journal.mu.Lock()
	p.journal.cur.size = p.journal.segSize
	p.journal.mu.Unlock()
	stalled := false
	for i := 0; i < 100000 && !stalled; i++ {
		q := long.OnQuery(context.Background(), strings.Repeat("x", 60), "simple", "")
		long.NewResult(q).Done("ok")
		_ = long.Durable(context.Background())
		stalled = strings.Contains(q.Decision.Reason, ErrStalled.Error())
	}
	require.True(t, stalled, "a session that cannot hand over its events stops recording")
	long.enc.Lock()
	held := len(long.batch.data)
	long.enc.Unlock()
	require.Less(t, held, 2*maxStalledBatch, "what it holds is bounded")
	require.ErrorContains(t, long.End(context.Background(), "client_closed", nil, 0, 0), "kept")
	require.NoError(t, os.Remove(filler))
	trail := sessiontestRead(t, b, long.ID)
	require.Equal(t, schemas.TypeSessionEnd, trail[len(trail)-1].Type, "the end is published once there is room")
	require.NoError(t, schemas.VerifyChain(trail))
	require.NoError(t, p.Close(context.Background()))
	require.Empty(t, segments(t, dir), "a clean stop leaves no segment")
}

// sessiontestRead reads a session's whole trail once its session.end is in.
func sessiontestRead(t *testing.T, b *bus.Bus, session string) []schemas.Event {
	t.Helper()
	var evs []schemas.Event
	require.Eventually(t, func() bool {
		evs = readTrail(t, b, session, 1)
		return evs[len(evs)-1].Type == schemas.TypeSessionEnd
	}, 30*time.Second, 100*time.Millisecond)
	return evs
}

func TestParseRecordRefusesDamage(t *testing.T) {
	j := &journal{dir: t.TempDir(), log: quiet, segSize: 4096}
	seg, err := j.write("gh.audit.demo.s.", "batch", []byte("0190-id"), []byte(`{"a":1}`+"\n"+`{"b":2}`))
	require.NoError(t, err)
	raw, err := os.ReadFile(seg.path)
	require.NoError(t, err)
	raw = raw[:seg.size]
	r, n, ok := parseRecord(raw)
	require.True(t, ok)
	require.Equal(t, len(raw), n)
	require.Equal(t, record{subject: "gh.audit.demo.s.batch", id: "0190-id", data: []byte(`{"a":1}` + "\n" + `{"b":2}`)}, r)
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x40
		_, _, ok := parseRecord(bad)
		require.False(t, ok, "a flipped bit at %d must be refused", i)
	}
	for i := range len(raw) {
		_, _, ok := parseRecord(raw[:i])
		require.False(t, ok, "a record cut at %d must be refused", i)
	}
}

// A proxy cut off from JetStream (here: a server without the audit stream, so nothing is
// acknowledged) keeps the sessions it has, refuses new ones once an event has waited past
// the offline limit, and admits them again once JetStream takes the spool.
func TestOfflineLimitRefusesNewSessions(t *testing.T) {
	url := bustest.StartServer(t)
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	p := NewPublisher(js, PublisherOptions{Spool: 1000, Wait: time.Second, OfflineLimit: 300 * time.Millisecond}, prometheus.NewRegistry(), quiet)
	id := &identity.Identity{}
	id.Subject = "svc-orders"
	open := func() (*Session, error) {
		s := New(id, &config.Resource{Name: "demo", Type: "postgres", Audit: "buffered"}, p, allow{}, Limits{ResultChunkBytes: 1024, MaxResultBytes: 4096, MaxSQLBytes: 64})
		return s, s.Start(context.Background(), &schemas.SessionStart{Protocol: "postgres"})
	}
	s, err := open()
	require.NoError(t, err, "nothing has waited yet")
	require.Eventually(t, func() bool {
		_, err := open()
		return errors.Is(err, ErrOffline)
	}, 30*time.Second, 20*time.Millisecond, "new sessions are refused once an event waited past the limit")
	_, err = open()
	require.ErrorContains(t, err, "audit.offline_limit")
	statements(t, s, 2) // the open session goes on

	// The link returns: JetStream takes the spool, sessions are admitted again.
	b := bustest.ConnectURL(t, url)
	require.Eventually(t, func() bool { _, err := open(); return err == nil }, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, s.End(context.Background(), "client_closed", nil, 0, 0))
	evs := readTrail(t, b, s.ID, 1+2*4+1)
	require.NoError(t, schemas.VerifyChain(evs))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, p.Close(ctx))
}

func BenchmarkJournalWrite(b *testing.B) {
	j, _, err := openJournal(b.TempDir(), quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer j.close()
	data := bytes.Repeat([]byte("x"), 700)
	id := []byte("01a23c43-e971-7add-9240-2f1eacf693de")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		seg, err := j.write("gh.audit.demo.01a23c43-e971-7add-9240-2f1eacf693de.", "batch", id, data)
		if err != nil {
			b.Fatal(err)
		}
		seg.ack(1)
	}
}

// A segment that is full keeps its file until JetStream acknowledges what is in it, but
// not its mapping: during a long outage the spool fills without the process holding every
// segment in its address space. Its records are still there for the next start.
func TestJournalUnmapsFullSegments(t *testing.T) {
	dir := t.TempDir()
	j, _, err := openJournal(dir, quiet)
	require.NoError(t, err)
	j.segSize = 4096
	var segs []*segment
	for i := 0; len(segs) < 4; i++ {
		seg, err := j.write("gh.audit.demo.s.", "batch", []byte("id-"+strconv.Itoa(i)), bytes.Repeat([]byte{'x'}, 1000))
		require.NoError(t, err)
		if len(segs) == 0 || segs[len(segs)-1] != seg {
			segs = append(segs, seg)
		}
	}
	maps, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	mapped := 0
	for _, line := range strings.Split(string(maps), "\n") {
		if strings.Contains(line, dir) {
			mapped++
		}
	}
	require.Equal(t, 1, mapped, "only the segment being written is mapped:\n%s", maps)
	for _, s := range segs[:3] {
		require.Nil(t, s.mem)
		recs, dropped, err := readSegment(s.path)
		require.NoError(t, err)
		require.Zero(t, dropped)
		require.Len(t, recs, int(s.written.Load()), "unacknowledged records stay in the file")
	}
	j.close()
}

// A restart on a dead process's journal attests, with the audit key, each session it
// found there without an end: one session.attested outside the chain (position 0), signed
// over the last event the journal held. A session whose end was in the journal is sealed
// already and gets none.
func TestRestartAttestsWhatTheJournalHeld(t *testing.T) {
	b := bustest.Connect(t)
	dir := t.TempDir()
	key, err := seal.LoadKey(filepath.Join(t.TempDir(), "k"), true)
	require.NoError(t, err)
	nc, err := nats.Connect(bustest.StartServer(t)) // acknowledges nothing
	require.NoError(t, err)
	defer nc.Close()
	deadJS, err := jetstream.New(nc)
	require.NoError(t, err)
	dead := NewPublisher(deadJS, PublisherOptions{Spool: 1000, Wait: time.Second, Linger: time.Hour, SealKey: key}, prometheus.NewRegistry(), quiet)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = dead.OpenSpool(ctx, dir)
	require.NoError(t, err)
	id := &identity.Identity{}
	id.Subject = "svc-orders"
	open := func() *Session {
		s := New(id, &config.Resource{Name: "demo", Type: "postgres", Audit: "buffered"}, dead, allow{}, Limits{ResultChunkBytes: 1024, MaxResultBytes: 4096, MaxSQLBytes: 64})
		require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
		statements(t, s, 3)
		return s
	}
	running, ended := open(), open()
	require.NoError(t, ended.End(ctx, "client_closed", nil, 0, 0))
	_ = dead.journal.lock.Close()

	next := NewPublisher(b.JS, PublisherOptions{Spool: 1000, Wait: time.Second, Linger: time.Hour, SealKey: key}, prometheus.NewRegistry(), quiet)
	_, err = next.OpenSpool(ctx, dir)
	require.NoError(t, err)
	defer next.Close(context.Background())

	attested := map[string]schemas.Event{}
	c, err := b.JS.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	var last schemas.Event // running's last event
	for {
		m, err := c.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if err != nil {
			break
		}
		data, err := bus.AuditData(m.Headers(), m.Data())
		require.NoError(t, err)
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			var e schemas.Event
			require.NoError(t, json.Unmarshal(line, &e))
			switch {
			case e.Type == schemas.TypeSessionAttested:
				attested[e.SessionID] = e
			case e.SessionID == running.ID && e.Seq > last.Seq:
				last = e
			}
		}
	}
	require.Len(t, attested, 1, "only the session without an end")
	a, ok := attested[running.ID]
	require.True(t, ok)
	require.Zero(t, a.Seq)
	require.Equal(t, uint64(1+3*4), last.Seq)
	keys := map[string]ed25519.PublicKey{key.ID: key.Private.Public().(ed25519.PublicKey)}
	// The attestation proves the journal's events: a sweeper's end after event 5 is
	// superseded by them (seal.Supersede reads the attestation).
	evs := readTrail(t, b, running.ID, int(last.Seq))
	w := schemas.Event{ID: "w", Type: schemas.TypeSessionEnd, SessionID: running.ID, Seq: 6, Resource: "demo", PrevHash: evs[4].Hash,
		Payload: (&schemas.SessionEnd{Reason: seal.ReasonGatewayLost, LastSeq: 5}).AppendJSON(nil)}
	w.Hash, _ = w.ComputeHash()
	store := append(append([]schemas.Event{a}, evs[:5]...), append([]schemas.Event{w}, evs[5:]...)...)
	kept, sup, problems := seal.Supersede(running.ID, store, keys, func() bool { return false })
	require.Empty(t, problems)
	require.Equal(t, []seal.Superseded{{Seq: 6, Signed: last.Seq, SignedHash: last.Hash}}, sup)
	require.Len(t, kept, len(evs))
}

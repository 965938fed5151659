package session_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixedDecider schemas.DecisionReply

func (f fixedDecider) Decide(context.Context, *schemas.DecisionRequest) schemas.DecisionReply {
	return schemas.DecisionReply(f)
}

var limits = session.Limits{ResultChunkBytes: 1024, MaxResultBytes: 4096, MaxSQLBytes: 64}

func newSession(t *testing.T, b *bus.Bus, audit string, d session.Decider) (*session.Session, *session.Publisher) {
	return newLingeringSession(t, b, audit, d, 0)
}

func newLingeringSession(t testing.TB, b *bus.Bus, audit string, d session.Decider, linger time.Duration) (*session.Session, *session.Publisher) {
	pub := session.NewPublisher(b.JS, session.PublisherOptions{Spool: 1000, Wait: time.Second, Linger: linger}, prometheus.NewRegistry(), discard)
	t.Cleanup(func() {
		// Tests that take JetStream away leave events that cannot drain; do not wait long.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = pub.Close(ctx)
	})
	id := &identity.Identity{}
	id.Subject, id.Groups, id.Kind = "svc-orders", []string{"orders-readers"}, "service"
	res := &config.Resource{Name: "demo", Type: "postgres", Audit: audit}
	return session.New(id, res, pub, d, limits), pub
}

// recordSelectOne records what a proxy records for `select 1`: four events.
func recordSelectOne(ctx context.Context, s *session.Session) {
	q := s.OnQuery(ctx, "select 1", "simple", "")
	r := s.NewResult(q)
	r.Columns([]schemas.Column{{Name: "v", TypeOID: 23}})
	r.Row([][]byte{[]byte("1")})
	r.Tag("SELECT 1")
	r.Done("ok")
}

// readSession reads a session's events from GH_AUDIT.
func readSession(t *testing.T, b *bus.Bus, id string, want int) []schemas.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := b.JS.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.SubjectAudit + ".demo." + id + ".>"}})
	require.NoError(t, err)
	var evs []schemas.Event
	for len(evs) < want {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err, "got %d of %d events", len(evs), want)
		data, err := bus.AuditData(m.Headers(), m.Data())
		require.NoError(t, err)
		if len(data) >= 1024 {
			if m.Headers().Get(bus.HeaderEncoding) == "" {
				require.GreaterOrEqual(t, len(s2.Encode(nil, data)), len(data), "a batch of %d bytes goes out compressed unless that does not make it smaller", len(data))
			} else {
				require.Less(t, len(m.Data()), len(data))
			}
		}
		lines := bytes.Split(data, []byte{'\n'})
		for i, line := range lines {
			var e schemas.Event
			require.NoError(t, json.Unmarshal(line, &e))
			if i == 0 {
				// The first event's id, or that id and "~N" when JetStream held it as in
				// process (TestMessageIDInProcessDoesNotHoldThePublisher).
				msgID := m.Headers().Get(jetstream.MsgIDHeader)
				if base, n, ok := strings.Cut(msgID, "~"); ok && n != "" && strings.Trim(n, "0123456789") == "" {
					msgID = base
				}
				require.Equal(t, msgID, e.ID, "Nats-Msg-Id must be the first event's id")
			}
			if len(lines) == 1 {
				require.Equal(t, bus.AuditSubject("demo", id, e.Type), m.Subject())
			} else {
				require.Equal(t, bus.AuditSubject("demo", id, session.BatchSubjectToken), m.Subject())
			}
			evs = append(evs, e)
		}
	}
	return evs
}

func TestSessionEventsAreChainedInOrder(t *testing.T) {
	b := bustest.Connect(t)
	s, _ := newSession(t, b, "buffered", fixedDecider{Effect: "allow", Rule: "r", Policy: "p", Revision: 3, Reason: "ok"})
	ctx := context.Background()
	require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
	q := s.OnQuery(ctx, "select 'a long statement that is longer than the sixty-four byte limit for recording'", "simple", "")
	require.True(t, q.Decision.Allowed())
	r := s.NewResult(q)
	r.Columns([]schemas.Column{{Name: "v", TypeOID: 25}})
	v := make([]byte, 300)
	for i := range v {
		v[i] = 'x'
	}
	for i := 0; i < 20; i++ { // 6000 bytes: several 1 KiB chunks, then over the 4 KiB cap
		r.Row([][]byte{v})
	}
	r.Row([][]byte{nil})
	r.Tag("SELECT 21")
	r.Done("ok")
	require.NoError(t, s.End(ctx, "client_closed", nil, 10, 20))

	all := readSession(t, b, s.ID, 9)
	require.NoError(t, schemas.VerifyChain(all))
	require.Equal(t, schemas.TypeSessionStart, all[0].Type)
	require.Equal(t, schemas.TypeDbQuery, all[1].Type)
	var dq schemas.DbQuery
	require.NoError(t, all[1].Decode(&dq))
	require.True(t, dq.Truncated)
	require.LessOrEqual(t, len(dq.SQL), 64)
	require.Equal(t, schemas.TypeDecision, all[2].Type)
	var chunks, rows int
	var done schemas.DbQueryDone
	for _, e := range all {
		switch e.Type {
		case schemas.TypeDbResultChunk:
			var c schemas.DbResultChunk
			require.NoError(t, e.Decode(&c))
			require.LessOrEqual(t, len(e.Payload), 2*limits.ResultChunkBytes, "chunk events are bounded")
			chunks++
			rows += len(c.Rows)
		case schemas.TypeDbQueryDone:
			require.NoError(t, e.Decode(&done))
		}
	}
	require.Greater(t, chunks, 1)
	require.Equal(t, uint64(21), done.Rows)
	require.Equal(t, uint64(rows), done.RowsRecorded)
	require.Less(t, done.RowsRecorded, done.Rows, "rows past max_result_bytes are counted, not recorded")
	require.Equal(t, []string{"SELECT 21"}, done.CommandTags)
	require.Equal(t, schemas.TypeSessionEnd, all[len(all)-1].Type)
	require.Equal(t, uint64(3), all[len(all)-1].PolicyRevision)
}

func TestStrictModeWaitsForJetStream(t *testing.T) {
	b := bustest.Connect(t)
	s, _ := newSession(t, b, "strict", fixedDecider{Effect: "allow", Revision: 1})
	ctx := context.Background()
	require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
	q := s.OnQuery(ctx, "select 1", "simple", "")
	require.True(t, q.Decision.Allowed())
	// In strict mode the events are acknowledged before OnQuery returns: they are in the
	// stream now, without waiting.
	info, err := b.JS.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	si, err := info.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(2), si.State.Msgs, "session.start, then the statement with its decision")

	// With JetStream gone, a strict session refuses the statement instead of forwarding it.
	require.NoError(t, b.JS.DeleteStream(ctx, bus.StreamAudit))
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	q = s.OnQuery(sctx, "select 2", "simple", "")
	require.False(t, q.Decision.Allowed())
	require.Contains(t, q.Decision.Reason, "audit trail unavailable")
}

func TestLingeringSessionSharesMessagesAndLosesNothing(t *testing.T) {
	b := bustest.Connect(t)
	s, _ := newLingeringSession(t, b, "buffered", fixedDecider{Effect: "allow", Revision: 1}, 200*time.Millisecond)
	ctx := context.Background()
	require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
	const statements = 50
	for i := 0; i < statements; i++ {
		q := s.OnQuery(ctx, "select 1", "simple", "")
		require.True(t, q.Decision.Allowed())
		r := s.NewResult(q)
		r.Columns([]schemas.Column{{Name: "v", TypeOID: 23}})
		r.Row([][]byte{[]byte("1")})
		r.Tag("SELECT 1")
		r.Done("ok")
	}
	// The session stays open: the lingering events go out on their own.
	all := readSession(t, b, s.ID, 1+4*statements)
	require.NoError(t, schemas.VerifyChain(all))
	stream, err := b.JS.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	si, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Less(t, si.State.Msgs, uint64(statements), "statements within the linger time share messages")
	require.NoError(t, s.End(ctx, "client_closed", nil, 0, 0))
	all = readSession(t, b, s.ID, 2+4*statements)
	require.Equal(t, schemas.TypeSessionEnd, all[len(all)-1].Type)
}

// EncodePending (called by the proxy once an answer is with its client) encodes a
// buffered session's events in the caller's goroutine and leaves them to go out with the
// lingering batch; racing statements and the publisher's sweeps, it keeps the chain whole
// and in order.
func TestEncodePendingKeepsTheChain(t *testing.T) {
	b := bustest.Connect(t)
	s, _ := newLingeringSession(t, b, "buffered", fixedDecider{Effect: "allow", Revision: 1}, time.Hour)
	ctx := context.Background()
	require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
	recordSelectOne(ctx, s)
	raw, encoded := session.Pending(s)
	require.Equal(t, [2]int{4, 0}, [2]int{raw, encoded}, "a statement's four events, recorded")
	s.EncodePending()
	raw, encoded = session.Pending(s)
	require.Equal(t, [2]int{0, 4}, [2]int{raw, encoded}, "encoded, and still lingering")
	recordSelectOne(ctx, s)
	s.EncodePending()
	raw, encoded = session.Pending(s)
	require.Equal(t, [2]int{0, 8}, [2]int{raw, encoded}, "the next statement's join the batch")

	// Racing: statements in one goroutine, EncodePending in another, as the proxy's client
	// and backend loops do; the batch spills past 64 KiB on the way.
	long, _ := newLingeringSession(t, b, "buffered", fixedDecider{Effect: "allow", Revision: 1}, 2*time.Millisecond)
	require.NoError(t, long.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
	const statements = 400
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < statements; i++ {
			q := long.OnQuery(ctx, "select '"+strings.Repeat("x", 100)+"'", "simple", "")
			r := long.NewResult(q)
			r.Columns([]schemas.Column{{Name: "v", TypeOID: 25}})
			r.Row([][]byte{[]byte(strings.Repeat("y", 100))})
			r.Tag("SELECT 1")
			r.Done("ok")
		}
	}()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			long.EncodePending()
		}
	}
	require.NoError(t, long.End(ctx, "client_closed", nil, 0, 0))
	all := readSession(t, b, long.ID, 2+4*statements)
	require.NoError(t, schemas.VerifyChain(all))
	require.Equal(t, schemas.TypeSessionEnd, all[len(all)-1].Type)

	// The first session's events went nowhere yet (its linger is an hour); its end sends them.
	require.NoError(t, s.End(ctx, "client_closed", nil, 0, 0))
	first := readSession(t, b, s.ID, 10)
	require.NoError(t, schemas.VerifyChain(first))
}

// gatehouse_events_published_total counts every event JetStream acknowledged, by type.
func TestPublishedEventsAreCountedByType(t *testing.T) {
	b := bustest.Connect(t)
	reg := prometheus.NewRegistry()
	pub := session.NewPublisher(b.JS, session.PublisherOptions{Spool: 1000, Wait: time.Second, Linger: 50 * time.Millisecond}, reg, discard)
	id := &identity.Identity{}
	id.Subject, id.Kind = "svc-orders", "service"
	s := session.New(id, &config.Resource{Name: "demo", Type: "postgres", Audit: "buffered"}, pub, fixedDecider{Effect: "allow", Revision: 1}, limits)
	ctx := context.Background()
	require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
	const statements = 70
	for i := 0; i < statements; i++ {
		recordSelectOne(ctx, s)
		if i%10 == 0 {
			s.EncodePending()
		}
	}
	require.NoError(t, s.End(ctx, "client_closed", nil, 0, 0))
	require.NoError(t, pub.Close(ctx))
	got := map[string]float64{}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "gatehouse_events_published_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	require.Equal(t, map[string]float64{schemas.TypeSessionStart: 1, schemas.TypeDbQuery: statements, schemas.TypeDecision: statements,
		schemas.TypeDbResultChunk: statements, schemas.TypeDbQueryDone: statements, schemas.TypeSessionEnd: 1}, got)
}

// A busy session's lingering events go out in messages of about 64 KiB, not in one message
// of everything the linger time gathered (which could pass a NATS server's max_payload).
func TestLingeringBatchesStaySmall(t *testing.T) {
	b := bustest.Connect(t)
	s, _ := newLingeringSession(t, b, "buffered", fixedDecider{Effect: "allow", Revision: 1}, time.Second)
	ctx := context.Background()
	require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
	const statements = 120 // about 480 events, 200 KiB: within the linger time, and fewer than maxRawEvents
	long := "select '" + strings.Repeat("x", 40) + "'"
	for i := 0; i < statements; i++ {
		q := s.OnQuery(ctx, long, "simple", "")
		r := s.NewResult(q)
		r.Columns([]schemas.Column{{Name: "v", TypeOID: 25}})
		r.Row([][]byte{[]byte(strings.Repeat("y", 40))})
		r.Tag("SELECT 1")
		r.Done("ok")
	}
	all := readSession(t, b, s.ID, 1+4*statements)
	require.NoError(t, schemas.VerifyChain(all))
	c, err := b.JS.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.SubjectAudit + ".demo." + s.ID + ".>"}})
	require.NoError(t, err)
	total, msgs, largest := 0, 0, 0
	for total < len(all) {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		data, err := bus.AuditData(m.Headers(), m.Data())
		require.NoError(t, err)
		total += bytes.Count(data, []byte{'\n'}) + 1
		msgs++
		largest = max(largest, len(data))
	}
	require.Equal(t, len(all), total)
	require.LessOrEqual(t, largest, 64<<10+4<<10, "a batch stops at about 64 KiB")
	require.GreaterOrEqual(t, msgs, 3, "the statements' events span several messages")
}

// A value too large for an event is recorded in part, and the chunk says so: a whole
// 10 MB value made an event no NATS message could carry, and it was lost with its chain
// link (the client still gets every value whole).
func TestHugeValuesAreRecordedInPart(t *testing.T) {
	b := bustest.Connect(t)
	s, _ := newLingeringSession(t, b, "buffered", fixedDecider{Effect: "allow", Revision: 1}, 5*time.Millisecond)
	ctx := context.Background()
	require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
	raw := make([]byte, 7_500_000)
	_, _ = rand.Read(raw) // incompressible
	huge := base64.StdEncoding.EncodeToString(raw)
	q := s.OnQuery(ctx, "select big from blobs", "simple", "")
	r := s.NewResult(q)
	r.Columns([]schemas.Column{{Name: "big", TypeOID: 25}})
	r.Row([][]byte{[]byte(huge)})
	r.Tag("SELECT 1")
	r.Done("ok")
	// Three values of 1,000 bytes with a 1,024-byte chunk limit (the test's): the first
	// whole, the others in part, a multi-byte character not split.
	q = s.OnQuery(ctx, "select a, b, c from wide", "simple", "")
	r = s.NewResult(q)
	r.Columns([]schemas.Column{{Name: "a", TypeOID: 25}, {Name: "b", TypeOID: 25}, {Name: "c", TypeOID: 25}})
	r.Row([][]byte{[]byte(strings.Repeat("a", 1000)), []byte(strings.Repeat("b", 63) + "é" + strings.Repeat("b", 936)), []byte(strings.Repeat("c", 1000))})
	r.Tag("SELECT 1")
	r.Done("ok")
	// An error quoting the huge value is recorded in part too.
	q = s.OnQuery(ctx, "select big::int from blobs", "simple", "")
	r = s.NewResult(q)
	r.Error("22P02", `invalid input syntax for type integer: "`+huge+`"`, "backend")
	r.Done("error")
	all := readSession(t, b, s.ID, 12)
	require.NoError(t, schemas.VerifyChain(all))
	var done schemas.DbQueryDone
	require.NoError(t, json.Unmarshal(all[len(all)-1].Payload, &done))
	require.Equal(t, "22P02", done.Error.Sqlstate)
	require.Less(t, len(done.Error.Message), 9<<10)
	require.True(t, strings.HasSuffix(done.Error.Message, " …"))
	var chunks []schemas.DbResultChunk
	for _, e := range all {
		if e.Type == schemas.TypeDbResultChunk {
			var c schemas.DbResultChunk
			require.NoError(t, json.Unmarshal(e.Payload, &c))
			chunks = append(chunks, c)
		}
	}
	require.Len(t, chunks, 2)
	require.Equal(t, uint32(1), chunks[0].ValuesTruncated)
	require.Equal(t, huge[:limits.ResultChunkBytes], *chunks[0].Rows[0][0])
	require.Equal(t, uint32(2), chunks[1].ValuesTruncated)
	require.Equal(t, strings.Repeat("a", 1000), *chunks[1].Rows[0][0])
	require.Equal(t, strings.Repeat("b", 63), *chunks[1].Rows[0][1], "cut before the two-byte character")
	require.Equal(t, strings.Repeat("c", 64), *chunks[1].Rows[0][2])
}

func TestSpoolFullRefusesStatements(t *testing.T) {
	for _, linger := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(linger.String(), func(t *testing.T) { testSpoolFullRefusesStatements(t, linger) })
	}
}

func testSpoolFullRefusesStatements(t *testing.T, linger time.Duration) {
	b := bustest.Connect(t)
	pub := session.NewPublisher(b.JS, session.PublisherOptions{Spool: 1, SpoolBytes: 1 << 20, Wait: 10 * time.Millisecond, Linger: linger}, prometheus.NewRegistry(), discard)
	id := &identity.Identity{}
	id.Subject = "x"
	s := session.New(id, &config.Resource{Name: "demo", Audit: "buffered"}, pub, fixedDecider{Effect: "allow"}, limits)
	// Stop JetStream from acknowledging so the one-event spool stays full.
	require.NoError(t, b.JS.DeleteStream(context.Background(), bus.StreamAudit))
	denied := false
	// In flight: up to 4096 messages in the publisher and 4000 in the JetStream client, and
	// 1 MiB in all.
	for i := 0; i < 200000 && !denied; i++ {
		q := s.OnQuery(context.Background(), "select 1", "simple", "")
		if !q.Decision.Allowed() {
			require.Contains(t, q.Decision.Reason, "spool is full")
			denied = true
		}
	}
	require.True(t, denied, "a full spool must refuse statements")
}

func TestNATSDeciderFailsClosed(t *testing.T) {
	b := bustest.Connect(t)
	d := &session.NATSDecider{NC: b.NC, Timeout: 300 * time.Millisecond}
	got := d.Decide(context.Background(), &schemas.DecisionRequest{SQL: &schemas.SQLRequest{Text: "select 1"}})
	require.Equal(t, "deny", got.Effect)
	require.Contains(t, got.Reason, "no policy service is running")

	// A policy service that never answers.
	sub, err := b.NC.QueueSubscribe(bus.SubjectDecide, bus.QueueDecide, func(*nats.Msg) {})
	require.NoError(t, err)
	defer sub.Unsubscribe()
	got = d.Decide(context.Background(), &schemas.DecisionRequest{SQL: &schemas.SQLRequest{Text: "select 1"}})
	require.Equal(t, "deny", got.Effect)
	require.Contains(t, got.Reason, "did not answer within 300ms")
}

func TestBoundRecordsParameters(t *testing.T) {
	b := bustest.Connect(t)
	s, _ := newSession(t, b, "buffered", fixedDecider{Effect: "allow", Revision: 1})
	ctx := context.Background()
	require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
	q := s.OnQuery(ctx, "select $1, $2, $3", "extended", "s1")
	s.Bound(q, "", [][]byte{[]byte("text value"), nil, {0, 0, 0, 7}}, func(i int) bool { return i == 2 }, true)
	s.NewResult(q).Done("ok")
	evs := readSession(t, b, s.ID, 5)
	require.NoError(t, schemas.VerifyChain(evs))
	var bind schemas.DbBind
	require.NoError(t, evs[3].Decode(&bind))
	require.Equal(t, q.ID, bind.QueryID)
	require.Len(t, bind.Params, 3)
	require.Equal(t, "text value", *bind.Params[0])
	require.Nil(t, bind.Params[1], "NULL stays null")
	require.Equal(t, "AAAABw==", *bind.Params[2], "binary values are base64")
	require.True(t, bind.Truncated)
}

func TestShadowDecisionIsRecorded(t *testing.T) {
	b := bustest.Connect(t)
	s, _ := newSession(t, b, "buffered", fixedDecider{Effect: "allow", Policy: "p", Rule: "r", Revision: 1,
		Shadow: &schemas.Shadow{Effect: "deny", Policy: "new", Rule: "stricter", Reason: "would be refused"}})
	ctx := context.Background()
	require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
	q := s.OnQuery(ctx, "select 1", "simple", "")
	require.True(t, q.Decision.Allowed(), "shadow decisions are not enforced")
	evs := readSession(t, b, s.ID, 3)
	var d schemas.Decision
	require.NoError(t, evs[2].Decode(&d))
	require.Equal(t, "allow", d.Effect)
	require.Equal(t, "deny", d.ShadowEffect)
	require.Equal(t, "new", d.ShadowPolicy)
	require.Equal(t, "stricter", d.ShadowRule)
	require.Equal(t, "would be refused", d.ShadowReason)
}

// session.end counts statements denied apart from statements held for approval: a held
// statement may be approved and run.
func TestSessionEndCountsDeniedAndHeldApart(t *testing.T) {
	b := bustest.Connect(t)
	d := &switchDecider{}
	s, _ := newSession(t, b, "buffered", d)
	ctx := context.Background()
	require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
	for _, effect := range []string{"allow", "require_approval", "deny", "require_approval", "mask"} {
		d.d = schemas.DecisionReply{Effect: effect, Revision: 1}
		s.OnQuery(ctx, "select 1", "simple", "")
	}
	require.NoError(t, s.End(ctx, "client_closed", nil, 0, 0))
	all := readSession(t, b, s.ID, 12)
	var end schemas.SessionEnd
	require.NoError(t, all[len(all)-1].Decode(&end))
	require.Equal(t, uint64(5), end.Statements)
	require.Equal(t, uint64(1), end.Denied)
	require.Equal(t, uint64(2), end.Held)
}

type switchDecider struct{ d schemas.DecisionReply }

func (s *switchDecider) Decide(context.Context, *schemas.DecisionRequest) schemas.DecisionReply {
	return s.d
}

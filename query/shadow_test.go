package query

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/seal"
)

// Rows published later under the key of a stored event — altered, in another partition
// (resource and month rewritten, so no merge ever drops them), one re-typed as terminal
// output — change nothing a session read shows: replay, terminals and asciicast read the
// first stored row of each key, and verify reads the same and reports each later row as
// shadowed. A row from the same stream position with other content (an alteration in the
// store itself) is named as altered by replay and verify.
func TestLaterRowsUnderATakenKeyAreIgnored(t *testing.T) {
	ctx := context.Background()
	genuine := sshEvents(t, "ssh-1")
	conn, log := ingestSessions(t, genuine)
	a := New(conn, "gh", nil, nil, log)
	read := func(h echo.HandlerFunc, target string) string {
		t.Helper()
		code, body := get(t, h, target, "id", "ssh-1")
		require.Equal(t, http.StatusOK, code, body)
		return body
	}
	replay, terminals, asciicast := a.replay, a.terminals, a.asciicast
	before := []string{read(replay, "/api/v1/sessions/ssh-1"), read(terminals, "/api/v1/sessions/ssh-1/terminals"),
		read(asciicast, "/api/v1/sessions/ssh-1/asciicast?channel=0")}
	verified := func() []seal.Problem {
		v, err := VerifySessions(ctx, conn, "gh", []string{"ssh-1"}, nil, nil)
		require.NoError(t, err)
		return v.Problems
	}
	baseline := verified()

	insert := func(e schemas.Event, resource string, streamSeq uint64) {
		t.Helper()
		b, err := conn.PrepareBatch(ctx, "INSERT INTO gh.events ("+ingest.EventColumns+")")
		require.NoError(t, err)
		require.NoError(t, b.Append(e.Time, e.Time, uint64(e.Time.UnixMicro()), e.ID, e.Type, e.Code, e.SessionID, e.Seq, resource,
			e.Identity.Subject, e.Identity.Name, e.Identity.Issuer, e.Identity.Groups, e.Identity.Kind, e.Identity.OnBehalfOf, e.PolicyRevision,
			e.PrevHash, e.Hash, string(e.Payload), streamSeq, uint32(0)))
		require.NoError(t, b.Send())
	}
	var ioAt, other int
	for i, e := range genuine {
		switch {
		case e.Type == schemas.TypeSshIo && ioAt == 0:
			ioAt = i
		case e.Type == schemas.TypeSshRequest && other == 0:
			other = i
		}
	}
	require.NotZero(t, ioAt)
	require.NotZero(t, other)
	// The output rewritten, in another partition; a request re-typed as output; both
	// rehashed, both published after everything (a later stream position).
	forged := genuine[ioAt]
	forged.Payload = (&schemas.SshIo{Frames: []schemas.TermFrame{{TUS: 1, Code: "o", Data: "forged\r\n"}}}).AppendJSON(nil)
	forged.Time = forged.Time.AddDate(0, -2, 0)
	forged.Hash, _ = forged.ComputeHash()
	insert(forged, "zzz", 1<<40)
	retyped := genuine[other]
	retyped.Type, retyped.Code = schemas.TypeSshIo, schemas.Codes[schemas.TypeSshIo]
	retyped.Payload = (&schemas.SshIo{Frames: []schemas.TermFrame{{TUS: 2, Code: "o", Data: "slipped in\r\n"}}}).AppendJSON(nil)
	retyped.Hash, _ = retyped.ComputeHash()
	insert(retyped, genuine[other].Resource, 1<<40+1)
	check := func(shadows ...uint64) {
		t.Helper()
		after := []string{read(replay, "/api/v1/sessions/ssh-1"), read(terminals, "/api/v1/sessions/ssh-1/terminals"),
			read(asciicast, "/api/v1/sessions/ssh-1/asciicast?channel=0")}
		require.Equal(t, before, after, "every session read shows the rows the gateway wrote")
		got, err := ReadSession(ctx, conn, "gh", "ssh-1")
		require.NoError(t, err)
		require.Equal(t, genuine, got)
		problems := verified()
		require.Len(t, problems, len(baseline)+len(shadows), "%+v", problems)
		var seqs []uint64
		for _, p := range problems[:len(shadows)] {
			require.Equal(t, "shadowed", p.Kind, "%+v", p)
			seqs = append(seqs, p.Seq)
		}
		require.Equal(t, shadows, seqs)
		require.Equal(t, baseline, problems[len(shadows):])
	}
	check(genuine[other].Seq, genuine[ioAt].Seq)
	// A merge drops the later row in the event's own partition; the other stays for good,
	// and stays ignored and reported.
	require.NoError(t, conn.Exec(ctx, "OPTIMIZE TABLE gh.events FINAL"))
	check(genuine[ioAt].Seq)

	// The same stream position twice with other content: altered in the store.
	var at uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT min(stream_seq) FROM gh.events WHERE session_id = 'ssh-1' AND seq = ?", genuine[1].Seq).Scan(&at))
	altered := genuine[1]
	altered.Payload = []byte(`{"altered":true}`)
	insert(altered, altered.Resource, at)
	problems := verified()
	kinds := map[string]int{}
	for _, p := range problems {
		kinds[p.Kind]++
	}
	require.Positive(t, kinds["altered"], "%+v", problems)
	code, body := get(t, a.replay, "/api/v1/sessions/ssh-1", "id", "ssh-1")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "(event altered)")
}

// Which of two rows under one key is read is decided by the stream position, not by the
// order the rows were inserted or come back from ClickHouse: inserted late-first, the
// earlier stream position is still the one replay and ReadSession show.
func TestTheEarlierStreamPositionIsRead(t *testing.T) {
	ctx := context.Background()
	conn := startStore(t)
	var early []schemas.Event
	prev := ""
	for i := range 20 {
		e := schemas.Event{ID: fmt.Sprintf("e%02d", i), Type: schemas.TypeDbQuery, Code: schemas.Codes[schemas.TypeDbQuery], SessionID: "s", Seq: uint64(i + 1),
			Time: time.Date(2026, 11, 1, 0, 0, i, 0, time.UTC), Resource: "demo", PrevHash: prev,
			Payload: (&schemas.DbQuery{QueryID: uint64(i + 1), SQL: "select 'early'", Protocol: "simple"}).AppendJSON(nil)}
		e.Hash, _ = e.ComputeHash()
		prev = e.Hash
		early = append(early, e)
	}
	insert := func(evs []schemas.Event, streamSeq uint64) {
		b, err := conn.PrepareBatch(ctx, "INSERT INTO gh.events ("+ingest.EventColumns+")")
		require.NoError(t, err)
		for _, e := range evs {
			require.NoError(t, b.Append(e.Time, e.Time, uint64(e.Time.UnixMicro()), e.ID, e.Type, e.Code, e.SessionID, e.Seq, e.Resource,
				"", "", "", []string{}, "", "", e.PolicyRevision, e.PrevHash, e.Hash, string(e.Payload), streamSeq, uint32(0)))
		}
		require.NoError(t, b.Send())
	}
	late := make([]schemas.Event, len(early))
	for i, e := range early {
		e.Payload = []byte(strings.Replace(string(e.Payload), "early", "late", 1))
		late[i] = e
	}
	insert(late, 20)
	insert(early, 10)
	got, err := ReadSession(ctx, conn, "gh", "s")
	require.NoError(t, err)
	require.Equal(t, early, got)
	code, body := get(t, New(conn, "gh", nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil))).replay, "/api/v1/sessions/s", "id", "s")
	require.Equal(t, http.StatusOK, code)
	var r Replay
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	require.Equal(t, early, r.Events)
	require.True(t, r.ChainOK, r.ChainError)
}

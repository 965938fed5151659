package schemas_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/schemas/internal/schemagen"
)

// TestGeneratedIsCurrent fails when events_gen.go, EVENTS.md, messages_gen.go or
// MESSAGES.md does not match events.yaml and messages.yaml: run `go generate ./...` in
// schemas/.
func TestGeneratedIsCurrent(t *testing.T) {
	events, err := os.ReadFile("events.yaml")
	if err != nil {
		t.Fatal(err)
	}
	messages, err := os.ReadFile("messages.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, msg, err := schemagen.Load(events, messages)
	if err != nil {
		t.Fatal(err)
	}
	code, err := schemagen.RenderGo(s)
	if err != nil {
		t.Fatal(err)
	}
	msgCode, err := schemagen.RenderMessagesGo(msg)
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string][]byte{"events_gen.go": code, "EVENTS.md": schemagen.RenderMarkdown(s),
		"messages_gen.go": msgCode, "MESSAGES.md": schemagen.RenderMessagesMarkdown(msg)} {
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is stale: run `go generate ./...` in schemas/", file)
		}
	}
	if len(schemas.Codes) != len(s.Types) {
		t.Errorf("Codes has %d entries, schema has %d types", len(schemas.Codes), len(s.Types))
	}
}

func TestParseRejectsDuplicates(t *testing.T) {
	_, err := schemagen.Parse([]byte("types:\n- {name: a, code: X1, doc: d}\n- {name: b, code: X1, doc: d}\n"))
	if err == nil {
		t.Fatal("duplicate code accepted")
	}
	_, err = schemagen.Parse([]byte("types:\n- {name: a, code: X1, doc: d, bogus: 1}\n"))
	if err == nil {
		t.Fatal("unknown field accepted")
	}
}

func chain(t *testing.T, n int) []schemas.Event {
	t.Helper()
	var evs []schemas.Event
	prev := ""
	for i := 1; i <= n; i++ {
		p, _ := json.Marshal(schemas.DbQuery{QueryID: uint64(i), SQL: "select 1", Protocol: "simple"})
		e := schemas.Event{ID: string(rune('a' + i)), Type: schemas.TypeDbQuery, Code: schemas.CodeDbQuery,
			Time: time.Unix(int64(i), 0).UTC(), SessionID: "s", Seq: uint64(i), PrevHash: prev, Payload: p}
		h, err := e.ComputeHash()
		if err != nil {
			t.Fatal(err)
		}
		e.Hash = h
		prev = h
		evs = append(evs, e)
	}
	return evs
}

func TestVerifyChain(t *testing.T) {
	if err := schemas.VerifyChain(chain(t, 5)); err != nil {
		t.Fatalf("intact chain: %v", err)
	}
	altered := chain(t, 5)
	altered[2].Payload = json.RawMessage(`{"query_id":3,"sql":"drop table x","protocol":"simple"}`)
	if err := schemas.VerifyChain(altered); err == nil {
		t.Error("altered payload not detected")
	}
	missing := chain(t, 5)
	missing = append(missing[:2], missing[3:]...)
	if err := schemas.VerifyChain(missing); err == nil {
		t.Error("missing event not detected")
	}
	reordered := chain(t, 5)
	reordered[1], reordered[2] = reordered[2], reordered[1]
	if err := schemas.VerifyChain(reordered); err == nil {
		t.Error("reordered events not detected")
	}
}

func TestDecodeChecksType(t *testing.T) {
	e := chain(t, 1)[0]
	var q schemas.DbQuery
	if err := e.Decode(&q); err != nil || q.SQL != "select 1" {
		t.Fatalf("decode: %v %+v", err, q)
	}
	var s schemas.SessionStart
	if err := e.Decode(&s); err == nil {
		t.Fatal("decoded db.query as session.start")
	}
}

// A shared group is included by name, in place; an unknown one is refused.
func TestLoadExpandsIncludes(t *testing.T) {
	ev, msg, err := schemagen.Load([]byte("types:\n- {name: a, code: X1, doc: d, payload: [{name: id, go: uint64}, {include: g}]}\n"),
		[]byte("shared:\n  g: [{name: x, go: string}, {name: y, go: bool}]\nstructs:\n  S: {doc: S is s., fields: [{include: g}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := ev.Types[0].Payload; len(p) != 3 || p[1].Name != "x" || p[2].Name != "y" {
		t.Errorf("payload %+v", p)
	}
	if f := msg.Structs["S"].Fields; len(f) != 2 {
		t.Errorf("struct %+v", f)
	}
	if _, _, err := schemagen.Load([]byte("types:\n- {name: a, code: X1, doc: d, payload: [{include: nope}]}\n"), []byte("structs: {}\n")); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Error("unknown include accepted")
	}
}

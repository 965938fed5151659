package schemas

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func sampleEvents() [][]byte {
	v := "4111 1111 1111 1111"
	evs := []Event{
		{ID: "0192-a", Type: "db.query", Code: "GH2000", Time: time.Date(2026, 11, 22, 5, 1, 2, 345678901, time.UTC), SessionID: "s-1", Seq: 7,
			Identity: Identity{Subject: "CgxzdmMtb3JkZXJzEgVsb2NhbA", Name: "svc-orders@example.com", Issuer: "https://idp.example/", Groups: []string{"orders-readers", "ops"}, Kind: "service", OnBehalfOf: "alice@example.com"},
			Resource: "demo", PolicyRevision: 42, PrevHash: "ab", Hash: "cd", Payload: (&DbQuery{QueryID: 3, SQL: "select \"x\" from t where a = 'é\\n'", Protocol: "simple"}).AppendJSON(nil)},
		{ID: "e2", Type: "db.result_chunk", Time: time.Unix(0, 0).UTC(), Identity: Identity{Groups: []string{}}, Payload: (&DbResultChunk{Columns: []Column{{Name: "c"}}, Rows: [][]*string{{&v, nil}}}).AppendJSON(nil)},
	}
	var out [][]byte
	for i := range evs {
		out = append(out, evs[i].AppendJSON(nil))
	}
	return out
}

// The fast path and encoding/json agree on every input: same event, or both refuse.
func checkSame(t *testing.T, data []byte) {
	t.Helper()
	var want Event
	werr := json.Unmarshal(data, &want)
	var fast Event
	d := eventDecoder{b: data}
	if d.event(&fast) {
		if werr != nil {
			t.Fatalf("fast path took %q, encoding/json refused it: %v", data, werr)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("fast path and encoding/json differ on %q:\n%#v\n%#v", data, fast, want)
		}
	}
	var got Event
	gerr := UnmarshalEvent(data, &got)
	// A decoder that has seen other events first decodes it the same.
	var ed EventDecoder
	for _, prev := range sampleEvents() {
		var e Event
		_ = ed.Unmarshal(prev, &e)
	}
	var again Event
	if aerr := ed.Unmarshal(data, &again); (aerr == nil) != (werr == nil) || (aerr == nil && !reflect.DeepEqual(again, want)) {
		t.Fatalf("EventDecoder.Unmarshal(%q) after others = %v, %#v; encoding/json %v, %#v", data, aerr, again, werr, want)
	}
	if (gerr == nil) != (werr == nil) || (gerr == nil && !reflect.DeepEqual(got, want)) {
		t.Fatalf("UnmarshalEvent(%q) = %v, %#v; encoding/json %v, %#v", data, gerr, got, werr, want)
	}
}

func TestUnmarshalEventTakesTheFastPathForGatewayEvents(t *testing.T) {
	for _, data := range sampleEvents() {
		var e Event
		d := eventDecoder{b: data}
		if !d.event(&e) {
			t.Fatalf("fast path refused the gateway's own encoding: %s", data)
		}
		checkSame(t, data)
	}
}

func TestUnmarshalEventMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		`{}`, `null`, ` {"id":"a"} `, `{"id":"a"}x`, `{"ID":"a"}`, `{"id":"a","id":"b"}`, `{"id":null}`, `{"id":"\u0041"}`,
		`{"id":"a\u0000"}`, "{\"id\":\"\xff\"}", `{"seq":01}`, `{"seq":1.0}`, `{"seq":-1}`, `{"seq":18446744073709551616}`,
		`{"seq":1e3}`, `{"policy_revision":0}`, `{"time":"2026-11-22T05:01:02Z"}`, `{"time":"yesterday"}`, `{"time":1}`,
		`{"payload":null}`, `{"payload":{"a":[1,-2.5e+3,true,false,null,"\ud83d\ude00"]}}`, `{"payload":[}`, `{"payload":"\x"}`,
		`{"payload":01}`, `{"payload":-}`, `{"payload":1.}`, `{"payload":1e}`, `{"payload":{"a":1,}}`, `{"payload":[1,]}`,
		`{"identity":{"groups":null}}`, `{"identity":{"groups":[]}}`, `{"identity":{"groups":["a",]}}`, `{"identity":{"subject":"s","subject":"t"}}`, `{"identity":{"name":"a","name":"b"}}`,
		`{"identity":{"x":1}}`, `{"identity":[]}`, `{"unknown":1}`, `{"id":"a",}`, `{"id" "a"}`, `{"payload":{"k":"v"}} {}`,
		"{\"payload\":\"tab\there\"}", `{"payload":"é"}`, "{\"payload\":\"\xc3\"}",
	} {
		checkSame(t, []byte(s))
	}
}

func FuzzUnmarshalEvent(f *testing.F) {
	for _, d := range sampleEvents() {
		f.Add(d)
	}
	f.Add([]byte(`{"payload":{"a":[1,-2.5e+3,true,false,null,"\ud83d"]},"seq":3}`))
	f.Fuzz(func(t *testing.T, data []byte) { checkSame(t, data) })
}

func BenchmarkUnmarshalEvent(b *testing.B) {
	data := sampleEvents()[0]
	b.SetBytes(int64(len(data)))
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			var e Event
			if err := UnmarshalEvent(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decoder", func(b *testing.B) {
		var ed EventDecoder
		for b.Loop() {
			var e Event
			if err := ed.Unmarshal(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var e Event
			if err := json.Unmarshal(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

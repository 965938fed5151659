package schemas

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// nasty are strings that exercise every escaping rule of encoding/json.
var nasty = []string{"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "tab\tnl\ncr\r\b\f\x00\x01\x1f\x7f",
	"line\u2028para\u2029", "invalid \xff\xfe utf8 \xe2\x82", "émoji 😀 日本", "select * from t where a = 'x';", "\"\"\"",
	"trailing \xc3"}

// fill sets every field of v to random values: nil or empty slices and pointers, zero and
// non-zero numbers, and the nasty strings.
func fill(r *rand.Rand, v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(nasty[r.IntN(len(nasty))])
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 1)
	case reflect.Uint64, reflect.Uint32, reflect.Uint16:
		if r.IntN(3) > 0 {
			v.SetUint(r.Uint64() >> (64 - v.Type().Bits()))
		}
	case reflect.Int16, reflect.Int64, reflect.Int:
		if r.IntN(3) > 0 {
			v.SetInt(r.Int64N(1<<15) - 1<<14)
		}
	case reflect.Pointer:
		if r.IntN(3) > 0 {
			p := reflect.New(v.Type().Elem())
			fill(r, p.Elem())
			v.Set(p)
		}
	case reflect.Slice:
		if v.Type() == reflect.TypeOf(json.RawMessage(nil)) {
			if r.IntN(2) == 0 {
				// Payloads are what AppendJSON or Marshal produced: compact, escaped.
				v.SetBytes([]byte(`{"a":[1,"\u003cx\u003e"],"b":null}`))
			}
			return
		}
		switch r.IntN(3) {
		case 0: // nil
		case 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			s := reflect.MakeSlice(v.Type(), 1+r.IntN(4), 5)
			for i := range s.Len() {
				fill(r, s.Index(i))
			}
			v.Set(s)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Unix(r.Int64N(4e9), r.Int64N(1e9)).UTC()))
			return
		}
		for i := range v.NumField() {
			fill(r, v.Field(i))
		}
	default:
		panic("fill: unhandled kind " + v.Kind().String())
	}
}

type appender interface{ AppendJSON([]byte) []byte }

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []func() appender{func() appender { return &Event{} }, func() appender { return &Identity{} },
		func() appender { return &Column{} }, func() appender { return &SQLError{} }}
	for typ := range Codes {
		values = append(values, func() appender { p, _ := NewPayload(typ); return p.(appender) })
	}
	for _, mk := range values {
		for range 300 {
			v := mk()
			fill(r, reflect.ValueOf(v).Elem())
			want, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.AppendJSON(nil); string(got) != string(want) {
				t.Fatalf("%T:\n got %s\nwant %s", v, got, want)
			}
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range nasty {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q:\n got %s\nwant %s", s, got, want)
		}
	})
}

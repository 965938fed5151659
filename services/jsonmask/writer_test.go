package jsonmask

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// digits is a test detector: a run of 12 or more ASCII digits becomes as many '#'.
func digits(v []byte) ([]byte, int) {
	var out []byte
	n, run := 0, 0
	for i := 0; i <= len(v); i++ {
		if i < len(v) && v[i] >= '0' && v[i] <= '9' {
			run++
			continue
		}
		if run >= 12 {
			if out == nil {
				out = append(make([]byte, 0, len(v)), v...)
			}
			copy(out[i-run:i], bytes.Repeat([]byte{'#'}, run))
			n++
		}
		run = 0
	}
	if n == 0 {
		return v, 0
	}
	return out, n
}

// nothing is a detector that finds nothing.
func nothing(v []byte) ([]byte, int) { return v, 0 }

// tagMask marks what it was given, to show the text Mask sees.
func tagMask(method string, v []byte) []byte {
	return []byte(method + "(" + string(v) + ")")
}

func fields(t testing.TB, paths ...string) []Field {
	var out []Field
	for _, s := range paths {
		method := Redact
		if m, p, ok := strings.Cut(s, " "); ok {
			method, s = m, p
		}
		p, err := ParsePath(s)
		require.NoError(t, err)
		out = append(out, Field{Path: p, Method: method})
	}
	return out
}

// run masks in written whole, then closes.
func run(spec *Spec, in string) (string, []Count, error) {
	var b bytes.Buffer
	w := NewWriter(&b, spec)
	_, err := w.Write([]byte(in))
	if err == nil {
		err = w.Close()
	}
	return b.String(), w.Masked(), err
}

// runPieces masks in written in the pieces cut at the given offsets.
func runPieces(spec *Spec, in string, cuts ...int) (string, error) {
	var b bytes.Buffer
	w := NewWriter(&b, spec)
	prev := 0
	for _, c := range append(cuts, len(in)) {
		if _, err := w.Write([]byte(in[prev:c])); err != nil {
			return b.String(), err
		}
		prev = c
	}
	err := w.Close()
	return b.String(), err
}

func TestPaths(t *testing.T) {
	doc := `{"customers":[{"name":"Ann","card_number":"4111 1111 1111 1111","password":"pw1"},` +
		`{"name":"Bob","card_number":5500000000000004,"profile":{"password":"pw2","x":[{"password":null}]}}],` +
		`"data":{"a":"1","b":{"c":2},"d":[3]},"items":[{"data":{"k":"v","n":1}},{"data":[true,"s"]},{"other":1}],` +
		`"weird.key":"w","weird":{"key":"not this"},"list":[{"a":"first"},{"a":"second"}]}`
	for _, tc := range []struct {
		path string
		want string
		n    uint64
	}{
		{"$.customers[*].card_number",
			`{"customers":[{"name":"Ann","card_number":"[redacted]","password":"pw1"},` +
				`{"name":"Bob","card_number":"[redacted]","profile":{"password":"pw2","x":[{"password":null}]}}],` +
				`"data":{"a":"1","b":{"c":2},"d":[3]},"items":[{"data":{"k":"v","n":1}},{"data":[true,"s"]},{"other":1}],` +
				`"weird.key":"w","weird":{"key":"not this"},"list":[{"a":"first"},{"a":"second"}]}`, 2},
		{"$..password",
			`{"customers":[{"name":"Ann","card_number":"4111 1111 1111 1111","password":"[redacted]"},` +
				`{"name":"Bob","card_number":5500000000000004,"profile":{"password":"[redacted]","x":[{"password":"[redacted]"}]}}],` +
				`"data":{"a":"1","b":{"c":2},"d":[3]},"items":[{"data":{"k":"v","n":1}},{"data":[true,"s"]},{"other":1}],` +
				`"weird.key":"w","weird":{"key":"not this"},"list":[{"a":"first"},{"a":"second"}]}`, 3},
		{"$.data.*",
			`{"customers":[{"name":"Ann","card_number":"4111 1111 1111 1111","password":"pw1"},` +
				`{"name":"Bob","card_number":5500000000000004,"profile":{"password":"pw2","x":[{"password":null}]}}],` +
				`"data":{"a":"[redacted]","b":"[redacted]","d":"[redacted]"},"items":[{"data":{"k":"v","n":1}},{"data":[true,"s"]},{"other":1}],` +
				`"weird.key":"w","weird":{"key":"not this"},"list":[{"a":"first"},{"a":"second"}]}`, 3},
		{"$.items[*].data.*",
			`{"customers":[{"name":"Ann","card_number":"4111 1111 1111 1111","password":"pw1"},` +
				`{"name":"Bob","card_number":5500000000000004,"profile":{"password":"pw2","x":[{"password":null}]}}],` +
				`"data":{"a":"1","b":{"c":2},"d":[3]},"items":[{"data":{"k":"[redacted]","n":"[redacted]"}},{"data":["[redacted]","[redacted]"]},{"other":1}],` +
				`"weird.key":"w","weird":{"key":"not this"},"list":[{"a":"first"},{"a":"second"}]}`, 4},
		{"$['weird.key']",
			`{"customers":[{"name":"Ann","card_number":"4111 1111 1111 1111","password":"pw1"},` +
				`{"name":"Bob","card_number":5500000000000004,"profile":{"password":"pw2","x":[{"password":null}]}}],` +
				`"data":{"a":"1","b":{"c":2},"d":[3]},"items":[{"data":{"k":"v","n":1}},{"data":[true,"s"]},{"other":1}],` +
				`"weird.key":"[redacted]","weird":{"key":"not this"},"list":[{"a":"first"},{"a":"second"}]}`, 1},
		{"$.list[1].a",
			`{"customers":[{"name":"Ann","card_number":"4111 1111 1111 1111","password":"pw1"},` +
				`{"name":"Bob","card_number":5500000000000004,"profile":{"password":"pw2","x":[{"password":null}]}}],` +
				`"data":{"a":"1","b":{"c":2},"d":[3]},"items":[{"data":{"k":"v","n":1}},{"data":[true,"s"]},{"other":1}],` +
				`"weird.key":"w","weird":{"key":"not this"},"list":[{"a":"first"},{"a":"[redacted]"}]}`, 1},
		{"$.nothing.here", doc, 0},
		{"$[0].a", doc, 0}, // the document is an object, not an array
		{"$", `"[redacted]"`, 1},
	} {
		t.Run(tc.path, func(t *testing.T) {
			spec := &Spec{Fields: fields(t, tc.path)}
			got, counts, err := run(spec, doc)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.True(t, json.Valid([]byte(got)))
			var n uint64
			for _, c := range counts {
				n += c.Count
			}
			require.Equal(t, tc.n, n)
			checkSplits(t, spec, doc)
		})
	}
}

func TestIndexPath(t *testing.T) {
	spec := &Spec{Fields: fields(t, "$[0].a", "$[2][1]")}
	got, _, err := run(spec, `[{"a":"x","b":"y"},{"a":"z"},[0,1,2]]`)
	require.NoError(t, err)
	require.Equal(t, `[{"a":"[redacted]","b":"y"},{"a":"z"},[0,"[redacted]",2]]`, got)
}

func TestMethods(t *testing.T) {
	spec := &Spec{Fields: fields(t, "partial $.a", "hmac $.b", "$.c", "hmac $.d", "partial $.a"), Mask: tagMask}
	got, counts, err := run(spec, `{"a":"4111\u00311111","b":"t\"q\\","c":"x","d":7,"e":"keep"}`)
	require.NoError(t, err)
	// Mask sees the text unescaped; the Writer quotes what it returns; non-strings are
	// redacted whole; the first matching field decides
	require.Equal(t, `{"a":"partial(411111111)","b":"hmac(t\"q\\)","c":"redact(x)","d":"[redacted]","e":"keep"}`, got)
	require.Equal(t, []Count{
		{Name: "$.a", Method: Partial, Count: 1}, {Name: "$.b", Method: HMAC, Count: 1},
		{Name: "$.c", Method: Redact, Count: 1}, {Name: "$.d", Method: HMAC, Count: 1},
	}, counts)

	// a Mask returning control characters, quotes or invalid UTF-8 still gives valid JSON
	spec.Mask = func(string, []byte) []byte { return []byte("\x00\"\n\xff\u2028") }
	got, _, err = run(spec, `{"a":"v"}`)
	require.NoError(t, err)
	require.Equal(t, `{"a":"\u0000\"\n\ufffd\u2028"}`, got)
	require.True(t, json.Valid([]byte(got)))
}

func TestFieldName(t *testing.T) {
	p, err := ParsePath("$.a")
	require.NoError(t, err)
	w := NewWriter(&bytes.Buffer{}, &Spec{Fields: []Field{{Path: p, Method: HMAC, Name: "policy/rule"}}})
	_, err = w.Write([]byte(`{"a":1}{"a":2}`))
	require.NoError(t, err)
	require.Equal(t, []Count{{Name: "policy/rule", Method: HMAC, Count: 2}}, w.Masked())

	// no method is redact
	var b bytes.Buffer
	w = NewWriter(&b, &Spec{Fields: []Field{{Path: p}}, Mask: tagMask})
	_, err = w.Write([]byte(`{"a":"x"}`))
	require.NoError(t, err)
	require.Equal(t, `{"a":"redact(x)"}`, b.String())
	require.Equal(t, []Count{{Name: "$.a", Method: Redact, Count: 1}}, w.Masked())
}

// TestPassThrough: when nothing is masked, the output is the input byte for byte.
func TestPassThrough(t *testing.T) {
	docs := []string{
		"{ \"a\" : [ 1 , 2.50 , -0 , 1e+10 , 3E-2 ] ,\n\t\"b\" : { } , \"c\" : [ ] , \"d\" : null , \"e\" : true , \"f\" : false }\r\n",
		`"just a string with \"escapes\" \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00 é 😀"`,
		`  123  `,
		`{"card_number_x":"4111","cardnumber":1,"\u0063ard":"x","nested":{"deeper":[[[[{"k":"v"}]]]]}}`,
		"{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n{\"type\":\"MODIFIED\",\"object\":{\"a\":2}}\n",
		"",
		" \n ",
		`{"a":"` + strings.Repeat("x", 5000) + `"}`,
		`[` + strings.Repeat("1234567,", 1000) + `0]`,
	}
	specs := map[string]*Spec{
		"nil":     nil,
		"detect":  {Detect: nothing},
		"digits":  {Detect: digits}, // the documents hold no 12-digit run
		"fields":  {Fields: fields(t, "$.customers[*].card_number", "$..password", "$.x[3]", "$['weird.key']")},
		"both":    {Fields: fields(t, "$..card_number"), Detect: nothing},
		"tinymax": {Fields: fields(t, "$..card_number"), MaxValue: 4}, // nothing inspected: long values stream
	}
	for name, spec := range specs {
		for i, doc := range docs {
			t.Run(name+"/"+strconv.Itoa(i), func(t *testing.T) {
				got, counts, err := run(spec, doc)
				require.NoError(t, err)
				require.Equal(t, doc, got)
				require.Empty(t, counts)
				checkSplits(t, spec, doc)
			})
		}
	}
}

// checkSplits writes in byte by byte and in every split in two, and wants the output of
// writing it whole.
func checkSplits(t *testing.T, spec *Spec, in string) {
	t.Helper()
	want, wantErr := runPieces(spec, in)
	cuts := make([]int, 0, len(in))
	for i := 1; i < len(in); i++ {
		cuts = append(cuts, i)
	}
	// on an error, a string nothing inspects may have gone out as far as the last piece
	same := func(got string, err error, msg string, args ...any) {
		require.Equal(t, wantErr, err, append([]any{msg}, args...)...)
		if err == nil {
			require.Equal(t, want, got, append([]any{msg}, args...)...)
		} else {
			require.True(t, strings.HasPrefix(got, want), append([]any{msg}, args...)...)
		}
	}
	got, err := runPieces(spec, in, cuts...)
	same(got, err, "byte by byte")
	step := 1
	if len(in) > 600 { // long documents: a sample of the splits
		step = len(in)/300 + 1
	}
	for i := 0; i <= len(in); i += step {
		got, err := runPieces(spec, in, i)
		same(got, err, "split at %d", i)
	}
}

func TestSplits(t *testing.T) {
	doc := "{\"card\\u005fnumber\" : \"4111\\u00311111111111111\", \"n\": [4111111111111111, 4.111111111111111e15, -1.5E-3],\n" +
		"\"s\": \"é😀\\ud83d\\ude00 \\\" \\\\ 123456789012\", \"pa\\\"ss\": {\"x\": [true, false, null, {\"y\": \"}]\"}]}, \"k\": \"é\"}\n" +
		"[\"second\", 987654321098765]\n\"third\"\n42"
	for name, spec := range map[string]*Spec{
		"fields": {Fields: fields(t, "$.card_number", `$['pa"ss']`, "$..y")},
		"detect": {Detect: digits},
		"both":   {Fields: fields(t, "hmac $.card_number", "$..x"), Detect: digits, Mask: tagMask},
		"small":  {Fields: fields(t, "$.k"), Detect: digits, MaxValue: 8},
	} {
		t.Run(name, func(t *testing.T) {
			got, _, err := run(spec, doc)
			require.NoError(t, err)
			checkValidStream(t, got)
			checkSplits(t, spec, doc)
		})
	}
}

// checkValidStream wants s to be a stream of valid JSON values.
func checkValidStream(t *testing.T, s string) {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	for d.More() {
		var v json.RawMessage
		require.NoError(t, d.Decode(&v), s)
	}
}

func TestKeysUnescaped(t *testing.T) {
	spec := &Spec{Fields: fields(t, "$.card_number", `$['a"b']`, "$['c/d']", "$['é']", "$['😀']", `$['back\\slash']`)}
	for _, tc := range []struct{ in, want string }{
		{`{"card\u005fnumber":"1"}`, `{"card\u005fnumber":"[redacted]"}`},
		{`{"\u0063\u0061\u0072\u0064\u005f\u006e\u0075\u006d\u0062\u0065\u0072":"1"}`, `{"\u0063\u0061\u0072\u0064\u005f\u006e\u0075\u006d\u0062\u0065\u0072":"[redacted]"}`},
		{`{"card\u005Fnumber":"1"}`, `{"card\u005Fnumber":"[redacted]"}`},
		{`{"a\"b":"1","a\u0022b":"2","a\\\"b":"3"}`, `{"a\"b":"[redacted]","a\u0022b":"[redacted]","a\\\"b":"3"}`},
		{`{"c\/d":"1","c/d":"2"}`, `{"c\/d":"[redacted]","c/d":"[redacted]"}`},
		{`{"\u00e9":"1","é":"2","e\u0301":"3"}`, `{"\u00e9":"[redacted]","é":"[redacted]","e\u0301":"3"}`},
		{`{"\ud83d\ude00":"1","\ud83d":"2"}`, `{"\ud83d\ude00":"[redacted]","\ud83d":"2"}`},
		{`{"back\\slash":"1","back\slash":"2"}`, `{"back\\slash":"[redacted]",`}, // \s is no escape
		// a NUL ends the name for readers in C
		{`{"card_number\u0000":"1","card_number\u0000x":"2","\u0000card_number":"3"}`, `{"card_number\u0000":"[redacted]","card_number\u0000x":"[redacted]","\u0000card_number":"3"}`},
		// duplicate keys: each is masked
		{`{"card_number":"1","card_number":"2","card_number":{"x":"3"}}`, `{"card_number":"[redacted]","card_number":"[redacted]","card_number":"[redacted]"}`},
		// a key that is not a member name: the value of a member named card_number is not
		{`["card_number","1"]`, `["card_number","1"]`},
		// keys longer than any name
		{`{"` + strings.Repeat(`\u0061`, 100) + `":"1","card_number_and_more":"2"}`, `{"` + strings.Repeat(`\u0061`, 100) + `":"1","card_number_and_more":"2"}`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, _, _ := run(spec, tc.in)
			require.Equal(t, tc.want, got)
			checkSplits(t, spec, tc.in)
		})
	}
}

func TestNestedMatched(t *testing.T) {
	spec := &Spec{Fields: fields(t, "$.a", "$..b"), Detect: digits}
	in := `{"a":{"b":[1,{"c":"}]\"{["},[[[]]],"123456789012345"],"d":{}},"x":[{"b":[{"b":1}]},"123456789012345"],"a":[]}`
	got, counts, err := run(spec, in)
	require.NoError(t, err)
	require.Equal(t, `{"a":"[redacted]","x":[{"b":"[redacted]"},"###############"],"a":"[redacted]"}`, got)
	require.Equal(t, []Count{{Name: "$.a", Method: Redact, Count: 2}, {Name: "$..b", Method: Redact, Count: 1}, {Name: DetectorsName, Count: 1}}, counts)
	checkSplits(t, spec, in)
}

func TestStream(t *testing.T) {
	spec := &Spec{Fields: fields(t, "$.object.data.*"), Detect: digits}
	in := "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Secret\",\"data\":{\"k\":\"czNjcjN0\"}}}\n" +
		"{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Secret\",\"data\":{\"k\":\"b3RoZXI=\",\"j\":\"eA==\"}}}\n" +
		"{\"type\":\"BOOKMARK\",\"object\":{\"data\":[]}}{\"object\":{\"data\":{\"n\":1}}}\n 123456789012345 [1] 7"
	want := "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Secret\",\"data\":{\"k\":\"[redacted]\"}}}\n" +
		"{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Secret\",\"data\":{\"k\":\"[redacted]\",\"j\":\"[redacted]\"}}}\n" +
		"{\"type\":\"BOOKMARK\",\"object\":{\"data\":[]}}{\"object\":{\"data\":{\"n\":\"[redacted]\"}}}\n \"###############\" [1] 7"
	got, _, err := run(spec, in)
	require.NoError(t, err)
	require.Equal(t, want, got)
	checkSplits(t, spec, in)

	// each value is written when it is complete, before the stream ends
	var b bytes.Buffer
	w := NewWriter(&b, spec)
	_, err = w.Write([]byte("{\"object\":{\"data\":{\"k\":\"v\"}}}\n{\"object\":"))
	require.NoError(t, err)
	require.Equal(t, "{\"object\":{\"data\":{\"k\":\"[redacted]\"}}}\n{\"object\":", b.String())
	// a number at the top level ends only with what follows it, or Close
	_, err = w.Write([]byte("1}\n12"))
	require.NoError(t, err)
	require.Equal(t, "{\"object\":{\"data\":{\"k\":\"[redacted]\"}}}\n{\"object\":1}\n", b.String())
	require.NoError(t, w.Close())
	require.Equal(t, "{\"object\":{\"data\":{\"k\":\"[redacted]\"}}}\n{\"object\":1}\n12", b.String())
}

func TestCounts(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b, &Spec{Fields: fields(t, "$.a"), Detect: digits, MaxValue: 30})
	_, err := w.Write([]byte(`{"a":1,"b":"123456789012 123456789012"}`))
	require.NoError(t, err)
	require.Equal(t, []Count{{Name: "$.a", Method: Redact, Count: 1}, {Name: DetectorsName, Count: 2}}, w.TakeCounts())
	require.Empty(t, w.TakeCounts())
	_, err = w.Write([]byte(`{"a":2,"c":"` + strings.Repeat("x", 40) + `"}`))
	require.NoError(t, err)
	require.Equal(t, []Count{{Name: "$.a", Method: Redact, Count: 1}, {Name: OversizeName, Method: Redact, Count: 1}}, w.TakeCounts())
	require.Equal(t, []Count{{Name: "$.a", Method: Redact, Count: 2}, {Name: DetectorsName, Count: 2}, {Name: OversizeName, Method: Redact, Count: 1}}, w.Masked())
	require.Equal(t, `{"a":"[redacted]","b":"############ ############"}{"a":"[redacted]","c":"[redacted]"}`, b.String())
}

func TestNumbers(t *testing.T) {
	spec := &Spec{Detect: digits}
	for _, tc := range []struct{ in, want string }{
		{`4111111111111111`, `"################"`},
		{`-4111111111111111`, `"-################"`},
		{`4.111111111111111e15`, `"################"`},
		{`4111111111111111e0`, `"################"`},
		{`41111111111111110E-1`, `"################"`},
		{`0.4111111111111111e+16`, `"################"`},
		{`411111111111.1111e4`, `"################"`},
		{`4111111111111111.000`, `"################"`},
		{`4111111111111.5`, `"#############.5"`},
		{`1e300`, `1e300`}, // too long to write out: inspected as written
		{`1.5e3`, `1.5e3`},
		{`12345678901`, `12345678901`},
		{`[0,-0,0.0,1E+2]`, `[0,-0,0.0,1E+2]`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, _, err := run(spec, tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			checkSplits(t, spec, tc.in)
		})
	}
}

func TestAppendPlain(t *testing.T) {
	for in, want := range map[string]string{
		"0": "0", "-0": "0", "0.0": "0", "1.50": "1.5", "100": "100", "1e2": "100", "1E-2": "0.01",
		"0.00123": "0.00123", "-12.5e1": "-125", "12.5e-1": "1.25", "123e-5": "0.00123", "10e-1": "1",
		"0.1e1": "1", "5e0": "5", "7.0e+2": "700",
	} {
		got, ok := appendPlain(nil, []byte(in))
		require.True(t, ok, in)
		require.Equal(t, want, string(got), in)
	}
	_, ok := appendPlain(nil, []byte("1e500"))
	require.False(t, ok)
}

func TestLongValues(t *testing.T) {
	long := strings.Repeat("a", 100)
	spec := &Spec{Fields: fields(t, "hmac $.k"), Detect: nothing, Mask: tagMask, MaxValue: 50}
	in := `{"k":"` + long + `","d":"` + long + `","n":` + strings.Repeat("1", 60) + `,"short":"x","k":"y"}`
	got, counts, err := run(spec, in)
	require.NoError(t, err)
	// too long to inspect: replaced whole, not held
	require.Equal(t, `{"k":"[redacted]","d":"[redacted]","n":"[redacted]","short":"x","k":"hmac(y)"}`, got)
	require.Equal(t, []Count{{Name: "$.k", Method: HMAC, Count: 2}, {Name: OversizeName, Method: Redact, Count: 2}}, counts)
	checkSplits(t, spec, in)

	// the hold is bounded however the value comes
	var b bytes.Buffer
	w := NewWriter(&b, spec)
	_, err = w.Write([]byte(`{"d":"`))
	require.NoError(t, err)
	for range 1000 {
		_, err = w.Write([]byte(long))
		require.NoError(t, err)
		require.LessOrEqual(t, len(w.val), 50)
	}
	_, err = w.Write([]byte(`"}`))
	require.NoError(t, err)
	require.Equal(t, `{"d":"[redacted]"}`, b.String())

	// a long string nothing inspects streams through
	b.Reset()
	w = NewWriter(&b, &Spec{Fields: fields(t, "$.k"), MaxValue: 50})
	_, err = w.Write([]byte(`{"d":"`))
	require.NoError(t, err)
	for range 10 {
		_, err = w.Write([]byte(long))
		require.NoError(t, err)
	}
	require.Equal(t, `{"d":"`+strings.Repeat(long, 10), b.String())
}

func TestMalformed(t *testing.T) {
	spec := &Spec{Fields: fields(t, "$.a"), Detect: digits}
	for _, tc := range []struct {
		in     string
		offset int64
		out    string // what was written before the error
	}{
		{`{"a":1,}`, 7, `{"a":"[redacted]",`},
		{`{"b":"123456789012345`, -1, `{"b":`}, // cut short: nothing of the value
		{`{"b":"123456789012345\x"}`, 22, `{"b":`},
		{`{"b":"1234567890123` + "\x01" + `"}`, 19, `{"b":`},
		{`{"b":"\u12G4"}`, 10, `{"b":`},
		{`{"b":"` + "\xff" + `"}`, 6, `{"b":`},
		{`{"b":"` + "\xc0\xaf" + `"}`, 6, `{"b":`},         // overlong /
		{`{"b":"` + "\xed\xa0\x80" + `"}`, 7, `{"b":`},     // a surrogate in UTF-8
		{`{"b":"` + "\xe2\x82" + `"}`, 8, `{"b":`},         // cut short
		{`{"b":"` + "\xf4\x90\x80\x80" + `"}`, 7, `{"b":`}, // past U+10FFFF
		{`{"b":01}`, 6, `{"b":`},
		{`{"b":1.}`, 7, `{"b":`},
		{`{"b":-}`, 6, `{"b":`},
		{`{"b":1e}`, 7, `{"b":`},
		{`{"b":1e+}`, 8, `{"b":`},
		{`{"b":.5}`, 5, `{"b":`},
		{`{"b":+1}`, 5, `{"b":`},
		{`{"b":tru}`, 8, `{"b":`},
		{`{"b":nul`, -1, `{"b":`},
		{`{"b" 1}`, 5, `{"b" `},
		{`{b:1}`, 1, `{`},
		{`{"b":1]`, 6, `{"b":1`},
		{`[1}`, 2, `[1`},
		{`[1,]`, 3, `[1,`},
		{`{"b":[1 2]}`, 8, `{"b":[1 `},
		{`]`, 0, ``},
		{`{"a":{"x":[1,2}}`, 14, `{"a":`}, // inside a masked value: nothing of it
		{`{"a":"x"`, -1, `{"a":"[redacted]"`},
		{"\ufeff{}", 0, ``},
		{`{"b":"x"}}`, 9, `{"b":"x"}`},
		{`{"b":NaN}`, 5, `{"b":`},
		{"{\"b\":\"tab\there\"}", 9, `{"b":`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, _, err := run(spec, tc.in)
			var se *SyntaxError
			require.ErrorAs(t, err, &se)
			if tc.offset < 0 {
				tc.offset = int64(len(tc.in))
			}
			require.Equal(t, tc.offset, se.Offset, se.Error())
			require.Equal(t, tc.out, got)
			// written in pieces, the error is the same and so is the output (a
			// string nothing inspects may have gone out as far as the last piece)
			for i := 0; i <= len(tc.in); i++ {
				got, err2 := runPieces(spec, tc.in, i)
				require.Equal(t, err, err2, "split at %d", i)
				require.Equal(t, tc.out, got, "split at %d", i)
			}
		})
	}
}

func TestErrorIsSticky(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b, nil)
	n, err := w.Write([]byte(`[1,x]`))
	require.Equal(t, 3, n)
	require.Error(t, err)
	_, err2 := w.Write([]byte(`2]`))
	require.Equal(t, err, err2)
	require.Equal(t, err, w.Close())

	w = NewWriter(&b, nil)
	require.NoError(t, w.Close())
	_, err = w.Write([]byte(`1`))
	require.ErrorIs(t, err, ErrClosed)
}

type failWriter struct{ n int }

var errDst = errors.New("dst failed")

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errDst
	}
	f.n--
	return len(p), nil
}

func TestDstError(t *testing.T) {
	w := NewWriter(&failWriter{n: 1}, nil)
	_, err := w.Write([]byte(`[1,`))
	require.NoError(t, err)
	_, err = w.Write([]byte(`2,`))
	require.ErrorIs(t, err, errDst)
	_, err = w.Write([]byte(`3]`))
	require.ErrorIs(t, err, errDst)
	require.ErrorIs(t, w.Close(), errDst)
}

func TestDepth(t *testing.T) {
	nest := func(n int, open, close string) string {
		return strings.Repeat(open, n) + strings.Repeat(close, n)
	}
	for _, spec := range []*Spec{nil, {Fields: fields(t, "$..x", "$.a")}} {
		got, _, err := run(spec, nest(512, "[", "]"))
		require.NoError(t, err)
		require.Equal(t, nest(512, "[", "]"), got)

		_, _, err = run(spec, nest(513, "[", "]"))
		require.ErrorIs(t, err, ErrTooDeep)
		var se *SyntaxError
		require.ErrorAs(t, err, &se)
		require.Equal(t, int64(512), se.Offset)

		_, _, err = run(spec, nest(600, `{"a":`, "}"))
		require.ErrorIs(t, err, ErrTooDeep) // a masked value's content counts too
	}
	_, _, err := run(&Spec{MaxDepth: 3}, `[[[[]]]]`)
	require.ErrorIs(t, err, ErrTooDeep)
}

// TestNoAllocs: once warm, writing byte by byte allocates nothing per write.
func TestNoAllocs(t *testing.T) {
	doc := []byte(`{"customers":[{"card_number":"4111 1111 1111 1111","name":"A\u00e9","n":12.5e1,"password":{"a":[1]}},` +
		`{"x":"123456789012345","t":true}]}` + "\n")
	w := NewWriter(&bytes.Buffer{}, &Spec{Fields: fields(t, "$.customers[*].card_number", "$..password"), Detect: nothing})
	write := func() {
		for i := range doc {
			if _, err := w.Write(doc[i : i+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.dst = discard{}
	write()
	require.Zero(t, testing.AllocsPerRun(20, write))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestSpecial8(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := range 8 {
			var b [8]byte
			for i := range b {
				b[i] = 'a'
			}
			b[pos] = byte(c)
			require.Equal(t, !strPlain[c], special8(binary.LittleEndian.Uint64(b[:])), "byte %#x at %d", c, pos)
		}
	}
}

func TestSpecial8Random(t *testing.T) {
	alphabet := []byte{0, 1, 0x1f, 0x20, 0x21, '"', 0x23, '\\', 0x5b, 0x5d, 0x7f, 0x80, 0x81, 0xa0, 0xff, 'a'}
	r := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		var b [8]byte
		want := false
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
			if r.IntN(3) > 0 {
				b[i] = 'a'
			}
			want = want || !strPlain[b[i]]
		}
		require.Equal(t, want, special8(binary.LittleEndian.Uint64(b[:])), "%q", b)
	}
}

// TestMaskedValueNotHeld: a masked object, however large, is consumed as it comes.
func TestMaskedValueNotHeld(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b, &Spec{Fields: fields(t, "$.a"), Detect: digits, MaxValue: 1 << 10})
	_, err := w.Write([]byte(`{"a":[`))
	require.NoError(t, err)
	piece := []byte(`{"k":"` + strings.Repeat("123456789012345 ", 100) + `","n":[1,2,{"x":null}]},`)
	for range 2000 {
		_, err := w.Write(piece)
		require.NoError(t, err)
		require.Empty(t, w.val)
		require.Equal(t, `{"a":`, b.String())
	}
	_, err = w.Write([]byte(`0],"b":"123456789012345"}`))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.Equal(t, `{"a":"[redacted]","b":"###############"}`, b.String())
	require.LessOrEqual(t, cap(w.val), 2<<10)
	require.LessOrEqual(t, cap(w.out), 64<<10)
}

// TestWholeValues: $ masks every value of a stream whole.
func TestWholeValues(t *testing.T) {
	spec := &Spec{Fields: fields(t, "$")}
	in := "{\"a\":1}\n[1,[2]]\n\"s\" 12 true null {}"
	got, counts, err := run(spec, in)
	require.NoError(t, err)
	require.Equal(t, "\"[redacted]\"\n\"[redacted]\"\n\"[redacted]\" \"[redacted]\" \"[redacted]\" \"[redacted]\" \"[redacted]\"", got)
	require.Equal(t, []Count{{Name: "$", Method: Redact, Count: 7}}, counts)
	checkSplits(t, spec, in)
}

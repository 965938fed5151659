package jsonmask

import (
	"bytes"
	"encoding/json"
	"io"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// secretDetect masks the word SECRET wherever it is.
func secretDetect(v []byte) ([]byte, int) {
	n := bytes.Count(v, []byte("SECRET"))
	if n == 0 {
		return v, 0
	}
	return bytes.ReplaceAll(v, []byte("SECRET"), []byte("******")), n
}

func FuzzWriter(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`,
		`{"customers":[{"card_number":"4111 1111 1111 1111","password":"x"}]}`,
		`{"secret":{"a":[1,"SECRET",{"secret":2}]},"s\u0065cret":"x","b":"xxSECRETxx"}`,
		`["SE\u0043RET", 1e5, -0.5E-3, true, false, null, "\ud83d\ude00é"]`,
		`{"type":"ADDED","object":{}}` + "\n" + `{"type":"DELETED"}`,
		`{"a":"\"\\\/\b\f\n\r\t"}`,
		`[[[[[[]]]]]]`,
		`"SECRET"`,
		`123`,
		`{"a":1,}`,
		"{\"a\":\"\xff\"}",
	} {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	fields := []Field{{Path: Path{{Name: "secret", Deep: true}}, Method: Redact}, {Path: Path{{Name: "list"}, {Index: 1, IsIndex: true}}}}
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		valid := json.Valid(in) && utf8.Valid(in)
		split := int(cut) % (len(in) + 1)

		// nothing to mask: the output is the input, or a prefix of it on an error
		var plain bytes.Buffer
		w := NewWriter(&plain, &Spec{MaxDepth: 20000})
		_, err := w.Write(in)
		if err == nil {
			err = w.Close()
		}
		if valid {
			require.NoError(t, err)
		}
		if err == nil {
			require.Equal(t, string(in), plain.String())
			checkDecodes(t, in)
		} else {
			require.True(t, bytes.HasPrefix(in, plain.Bytes()))
			var se *SyntaxError
			require.ErrorAs(t, err, &se)
			require.LessOrEqual(t, int64(plain.Len()), se.Offset)
		}

		// masking: valid in, valid out, the same in pieces, and nothing it masks is left
		spec := &Spec{Fields: fields, Detect: secretDetect, MaxValue: 64, MaxDepth: 20000}
		out, _, err := run(spec, string(in))
		if valid {
			require.NoError(t, err)
			require.True(t, json.Valid([]byte(out)), out)
			checkMasked(t, []byte(out))
		}
		out2, err2 := runPieces(spec, string(in), split)
		require.Equal(t, err, err2)
		if err == nil {
			require.Equal(t, out, out2)
		}
		if len(in) <= 128 {
			cuts := make([]int, 0, len(in))
			for i := 1; i < len(in); i++ {
				cuts = append(cuts, i)
			}
			out2, err2 := runPieces(spec, string(in), cuts...)
			require.Equal(t, err, err2)
			if err == nil {
				require.Equal(t, out, out2)
			}
		}
	})
}

// checkDecodes wants s, accepted by the Writer, to be a stream of values encoding/json
// reads.
func checkDecodes(t *testing.T, s []byte) {
	d := json.NewDecoder(bytes.NewReader(s))
	for {
		var v json.RawMessage
		if err := d.Decode(&v); err == io.EOF {
			return
		} else {
			require.NoError(t, err, "%q", s)
		}
	}
}

// checkMasked wants no string of out to hold SECRET and every member named secret to be
// Redacted, keys compared as decoded.
func checkMasked(t require.TestingT, out []byte) {
	d := json.NewDecoder(bytes.NewReader(out))
	d.UseNumber()
	var walk func(underSecret bool)
	walk = func(underSecret bool) {
		tok, err := d.Token()
		require.NoError(t, err)
		if underSecret {
			require.Equal(t, Redacted, tok, "%s", out)
		}
		switch v := tok.(type) {
		case string:
			require.NotContains(t, v, "SECRET", "%s", out)
		case json.Number:
			require.NotContains(t, string(v), "SECRET")
		case json.Delim:
			if v == '{' {
				for d.More() {
					k, err := d.Token()
					require.NoError(t, err)
					walk(k.(string) == "secret")
				}
			} else {
				for d.More() {
					walk(false)
				}
			}
			_, err := d.Token()
			require.NoError(t, err)
		}
	}
	for d.More() {
		walk(false)
	}
}

func TestCheckMaskedCatches(t *testing.T) {
	// the fuzz checks can fail: a check that always passes tests nothing
	for _, s := range []string{`{"secret":1}`, `{"secr\u0065t":"x"}`, `["xSECRETx"]`, `{"a":{"secret":[]}}`} {
		ok := t.Run(s, func(t *testing.T) {
			ft := &recorder{}
			done := make(chan bool)
			go func() {
				defer close(done)
				checkMasked(ft, []byte(s))
			}()
			<-done
			if !ft.failed {
				t.Errorf("%s passed", s)
			}
		})
		require.True(t, ok)
	}
	// and the Writer passes them
	spec := &Spec{Fields: []Field{{Path: Path{{Name: "secret", Deep: true}}}}, Detect: secretDetect}
	for _, s := range []string{`{"secret":1}`, `{"secr\u0065t":"x"}`, `["xSECRETx","SE\u0043RET"]`, `{"a":{"secret":[]}}`} {
		out, _, err := run(spec, s)
		require.NoError(t, err)
		checkMasked(t, []byte(out))
		require.False(t, strings.Contains(out, "SECRET"))
	}
}

// recorder is a require.TestingT that notes a failure.
type recorder struct{ failed bool }

func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) FailNow()              { r.failed = true; runtime.Goexit() }

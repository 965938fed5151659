package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

func TestDetectors(t *testing.T) {
	for _, tc := range []struct {
		detector, in, want string
	}{
		{"card", "4111111111111111", "****"},
		{"card", "card 4111-1111-1111-1111 ok", "card **** ok"},
		{"card", "4111 1111 1111 1111", "****"},
		{"card", "4111111111111112", "4111111111111112"},               // Luhn fails
		{"card", "order 41111111111111110", "order 41111111111111110"}, // 17 digits, Luhn fails
		{"card", "x 1234567890123456789012 y", "x 1234567890123456789012 y"},
		{"card", "amount 4111111111111111.50", "amount ****.50"},
		{"email", "write to ada@example.com, or bob.smith+x@mail.example.org.", "write to ****, or ****."},
		{"email", "no at sign", "no at sign"},
		{"ssn", "ssn 123-45-6789", "ssn ****"},
		{"ssn", "000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000", "000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000"},
		{"iban", "pay GB82 WEST 1234 5698 7654 32 now", "pay **** now"},
		{"iban", "DE89370400440532013000", "****"},
		{"iban", "DE89370400440532013001", "DE89370400440532013001"}, // checksum fails
		{"phone", "call +1 (415) 555-2671 today", "call **** today"},
		{"phone", "call 415-555-2671", "call ****"},
		{"phone", "version 1.2.3", "version 1.2.3"},
	} {
		m, err := New(&schemas.MaskSpec{Detectors: []schemas.MaskDetector{{Name: tc.detector, Method: Redact}}}, nil)
		require.NoError(t, err)
		got, n := m.Detect([]byte(tc.in))
		require.Equal(t, tc.want, string(got), "%s on %q", tc.detector, tc.in)
		require.Equal(t, tc.want != tc.in, n > 0)
	}
}

func TestMethods(t *testing.T) {
	m, err := New(&schemas.MaskSpec{}, []byte(strings.Repeat("k", 32)))
	require.NoError(t, err)
	require.Equal(t, "****", string(m.Whole(Redact, []byte("secret"))))
	require.Equal(t, "**** **** **** 1111", string(m.Whole(Partial, []byte("4111 1111 1111 1111"))))
	require.Equal(t, "abc", string(m.Whole(Partial, []byte("abc"))), "short values keep their 4")
	a, b := m.Whole(HMAC, []byte("ada@example.com")), m.Whole(HMAC, []byte("ada@example.com"))
	require.Equal(t, a, b, "deterministic")
	require.NotEqual(t, a, m.Whole(HMAC, []byte("alan@example.com")))
	require.True(t, strings.HasPrefix(string(a), "tok_"))
	// The token is HMAC-SHA256(key, value), its first 10 bytes in hex: stable across
	// releases (tokens are joined on), and the same from a reused MAC as from a new one,
	// concurrently too.
	want := func(v string) string {
		mac := hmac.New(sha256.New, []byte(strings.Repeat("k", 32)))
		mac.Write([]byte(v))
		return "tok_" + hex.EncodeToString(mac.Sum(nil)[:10])
	}
	require.Equal(t, want("ada@example.com"), string(a))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				v := fmt.Sprintf("user-%d-%d@example.com", g, i%7)
				if got := string(m.Whole(HMAC, []byte(v))); got != want(v) {
					t.Errorf("%s: %s, want %s", v, got, want(v))
					return
				}
			}
		}()
	}
	wg.Wait()
	other, _ := New(&schemas.MaskSpec{}, []byte(strings.Repeat("j", 32)))
	require.NotEqual(t, a, other.Whole(HMAC, []byte("ada@example.com")), "keyed")
	nokey, _ := New(&schemas.MaskSpec{}, nil)
	require.Equal(t, "****", string(nokey.Whole(HMAC, []byte("ada@example.com"))), "no key: redacted, never clear")
}

func TestCustomRegex(t *testing.T) {
	m, err := New(&schemas.MaskSpec{Detectors: []schemas.MaskDetector{{Name: "regex", Pattern: `ORD-\d{6}`, Method: Partial}}}, nil)
	require.NoError(t, err)
	got, n := m.Detect([]byte("ref ORD-123456 and ORD-654321"))
	require.Equal(t, "ref ***-**3456 and ***-**4321", string(got))
	require.Equal(t, 2, n)
	_, err = New(&schemas.MaskSpec{Detectors: []schemas.MaskDetector{{Name: "regex", Pattern: `(`}}}, nil)
	require.Error(t, err)
}

// BenchmarkMask measures masking throughput on rows with several masked columns: a source
// column (partial), and detectors (card, email as HMAC) over free text.
func BenchmarkMask(b *testing.B) {
	m, err := New(&schemas.MaskSpec{Detectors: []schemas.MaskDetector{{Name: "card", Method: Partial}, {Name: "email", Method: HMAC}, {Name: "ssn", Method: Redact}}}, []byte(strings.Repeat("k", 32)))
	require.NoError(b, err)
	row := [][]byte{[]byte("4111111111111111"), []byte("ada.lovelace@example.com"), []byte("paid with 4012 8888 8888 1881 on 2024-05-01, contact grace@example.org"), []byte("a note without anything sensitive in it at all")}
	size := 0
	for _, v := range row {
		size += len(v)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for range b.N {
		for _, v := range row {
			m.Detect(v)
		}
		m.Whole(Partial, row[0])
	}
}

// FuzzDetect: any input is masked without a panic, and what a detector masked is not found
// again in the output.
func FuzzDetect(f *testing.F) {
	for _, s := range []string{"4111111111111111", "a@b.co", "123-45-6789", "GB82 WEST 1234 5698 7654 32", "+1 (415) 555-2671", "@@..@", "x@y.", "-"} {
		f.Add(s)
	}
	m, err := New(&schemas.MaskSpec{Detectors: []schemas.MaskDetector{{Name: "card", Method: Partial}, {Name: "email", Method: HMAC},
		{Name: "ssn", Method: Redact}, {Name: "iban", Method: Redact}, {Name: "phone", Method: Redact}}}, []byte(strings.Repeat("k", 32)))
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, s string) {
		out, _ := m.Detect([]byte(s))
		for _, find := range []func([]byte) [][2]int{findCards, findEmails, findSSNs, findIBANs} {
			if found := find(out); len(found) > 0 {
				t.Fatalf("%q -> %q still holds %q", s, out, out[found[0][0]:found[0][1]])
			}
		}
	})
}

func TestCacheSharesMaskersBySpec(t *testing.T) {
	c := NewCache(nil)
	spec := &schemas.MaskSpec{Detectors: []schemas.MaskDetector{{Name: "email", Method: Redact}}}
	a, err := c.Get(spec)
	require.NoError(t, err)
	b, err := c.Get(spec)
	require.NoError(t, err)
	require.Same(t, a, b, "the same spec (a cached decision's)")
	same := &schemas.MaskSpec{Detectors: []schemas.MaskDetector{{Name: "email", Method: Redact}}}
	d, err := c.Get(same)
	require.NoError(t, err)
	require.Same(t, a, d, "an equal spec (a new decision's)")
	_, err = c.Get(&schemas.MaskSpec{Detectors: []schemas.MaskDetector{{Name: "regex", Pattern: "("}}})
	require.Error(t, err)
}

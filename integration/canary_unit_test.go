package integration

import (
	"encoding/base64"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"
)

// The leak finder finds each form a canary can take in output, and not unrelated text.
func TestCanaryForms(t *testing.T) {
	ix := indexCanaries([]canary{newCanary("5274038165029471"), newCanary("qzxvkjwpmtrbhl")})
	for _, text := range []string{
		"5274038165029471", "x 1749205618304725 y", "5274 0381 6502 9471", "5274-0381-6502-9471", "card: 5274038165029472",
		"…0381650294…", hex.EncodeToString([]byte("5274038165029471")), base64.StdEncoding.EncodeToString([]byte("x5274038165029471")),
		`{"v":"QZXVKJWPMTRBHL"}`, "lhbrtmpwjkvxzq", "prefix kjwpmt suffix", base64.StdEncoding.EncodeToString([]byte("qzxvkjwpmtrbhl")),
		"71f9  5274038165029470",
	} {
		_, ok := ix.leak([]byte(text))
		require.True(t, ok, text)
	}
	for _, text := range []string{"************9471", "5274", "tok_0123456789abcdef", "qzxvk", "527403816", "2026-12-03T00:04:43.123Z 42"} {
		_, ok := ix.leak([]byte(text))
		require.False(t, ok, text)
	}
}

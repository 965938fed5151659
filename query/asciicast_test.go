package query

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

type termRecording Terminal

func (t termRecording) Terminal() Terminal { return Terminal(t) }

// A resize to no size (an exec's window-change without one) is left out: players stop on
// it. Real resizes and the output stay.
func TestAsciicastDropsEmptyResizes(t *testing.T) {
	rec := termRecording{Opened: time.Unix(1700000000, 0), Frames: []schemas.TermFrame{
		{TUS: 0, Code: "r", Data: "0x0"},
		{TUS: 10, Code: "o", Data: "hello\r\n"},
		{TUS: 20, Code: "r", Data: "120x40"},
		{TUS: 30, Code: "r", Data: "80x0"},
		{TUS: 40, Code: "e", Data: "err\r\n"},
	}}
	var b bytes.Buffer
	require.NoError(t, WriteAsciicast(&b, rec, AsciicastOptions{}))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 4, b.String())
	require.Contains(t, lines[1], `"o","hello\r\n"`)
	require.Contains(t, lines[2], `"r","120x40"`)
	require.Contains(t, lines[3], `"o","err\r\n"`)
	require.NotContains(t, b.String(), `x0"`)
}

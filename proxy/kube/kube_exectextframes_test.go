// Found by the attack round and fixed (was: medium, recording): a terminal's keystrokes (or a non-terminal exec's stdin) sent in
// WebSocket TEXT frames on the binary v5.channel.k8s.io protocol reach the pod unrecorded.
// The API server's wsstream (k8s.io/streaming pkg/httpstream/wsstream/conn.go: handle ->
// websocket.Message.Receive, codec chosen by the subprotocol) reads a frame's bytes whatever
// its opcode, so "\x00text-typed\r" in a text frame is stdin. The gateway's termRecorder
// treats every text frame as base64.channel.k8s.io (stream -= '0', base64-decode), fails to
// decode, and drops it: no "i" frame for a terminal, nothing in the stdin SHA-256 for a
// non-terminal exec. Observed (exec cat, tty=true): recorded "i:binary-typed\r" but no
// "i:text-typed" although the pod got and echoed it. Promised: exec sessions are recorded
// (stdin of a non-terminal exec as a hash). Fix: decide the codec from the negotiated
// subprotocol, not the opcode (or refuse text frames on binary protocols).
// Variant (TestAttackExecBase64BinaryFrames, same file): on base64.channel.k8s.io a BINARY
// frame "0<base64>" is stdin to the API server and stream 48 (dropped) to the recorder —
// observed "i:text-typed" recorded, "binary-typed" echoed by the pod and not recorded.
//
// Copy into proxy/kube/ (it uses startAttackWith from proxy/kube/attack_test.go) and run:
//   go test ./proxy/kube/ -run "TestAttackExecTextFrames|TestAttackExecBase64BinaryFrames" -count=1 -v

package kube_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// Attack (candidate): stdin in WebSocket TEXT frames on the binary v5.channel.k8s.io
// protocol. The API server's wsstream reads a frame's bytes whatever its opcode (the codec
// comes from the subprotocol); does the gateway's recorder?
func TestAttackExecTextFrames(t *testing.T) {
	e := startAttackWith(t, kubePolicies, false)
	d := websocket.Dialer{TLSClientConfig: e.tlsConfig(t), Subprotocols: []string{"v5.channel.k8s.io"}, HandshakeTimeout: 20 * time.Second}
	c, _, err := d.Dial("wss://"+e.addr+"/k8s/prod/api/v1/namespaces/default/pods/shell/exec?command=cat&container=main&stdin=true&stdout=true&tty=true",
		http.Header{"Authorization": {"Bearer " + e.token}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.WriteMessage(websocket.BinaryMessage, append([]byte{0}, "binary-typed\r"...)))
	require.NoError(t, c.WriteMessage(websocket.TextMessage, append([]byte{0}, "text-typed\r"...)))
	var out strings.Builder
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for !strings.Contains(out.String(), "text-typed") {
		_, p, err := c.ReadMessage()
		if err != nil {
			break
		}
		if len(p) > 0 && p[0] == 1 {
			out.Write(p[1:])
		}
	}
	echoed := strings.Contains(out.String(), "text-typed")
	_ = c.WriteMessage(websocket.BinaryMessage, append([]byte{0}, 4))
	_ = c.WriteMessage(websocket.BinaryMessage, []byte{255, 0})
	time.Sleep(time.Second)
	c.Close()
	evs := e.events(t, "prod-cluster", func(evs []schemas.Event) bool { return len(ofType[schemas.HttpDone](t, evs, schemas.TypeHttpDone)) > 0 })
	var frames strings.Builder
	for _, io := range ofType[schemas.KubeIo](t, evs, schemas.TypeKubeIo) {
		for _, f := range io.Frames {
			frames.WriteString(f.Code + ":" + f.Data + "|")
		}
	}
	t.Logf("echoed by the pod: %v; recorded: %q", echoed, truncate(frames.String(), 400))
	if echoed {
		require.Contains(t, frames.String(), "i:text-typed", "a terminal's keystrokes sent as text frames reach the pod unrecorded")
	}
}

// Variant: on base64.channel.k8s.io the API server decodes every frame as "<digit><base64>"
// whatever its opcode; the gateway reads a BINARY frame's first byte as the stream number
// ('0' = 48, not stdin) and drops it.
func TestAttackExecBase64BinaryFrames(t *testing.T) {
	e := startAttackWith(t, kubePolicies, false)
	d := websocket.Dialer{TLSClientConfig: e.tlsConfig(t), Subprotocols: []string{"v4.base64.channel.k8s.io", "base64.channel.k8s.io"}, HandshakeTimeout: 20 * time.Second}
	c, resp, err := d.Dial("wss://"+e.addr+"/k8s/prod/api/v1/namespaces/default/pods/shell/exec?command=cat&container=main&stdin=true&stdout=true&tty=true",
		http.Header{"Authorization": {"Bearer " + e.token}})
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Skipf("base64 protocol not served: %d %v", code, err)
	}
	defer c.Close()
	t.Logf("subprotocol %q", c.Subprotocol())
	enc := func(s string) []byte { return []byte("0" + base64.StdEncoding.EncodeToString([]byte(s))) }
	require.NoError(t, c.WriteMessage(websocket.TextMessage, enc("text-typed\r")))
	require.NoError(t, c.WriteMessage(websocket.BinaryMessage, enc("binary-typed\r")))
	var out strings.Builder
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for !strings.Contains(out.String(), "binary-typed") {
		_, p, err := c.ReadMessage()
		if err != nil {
			break
		}
		if len(p) > 0 && p[0] == '1' {
			b, _ := base64.StdEncoding.DecodeString(string(p[1:]))
			out.Write(b)
		}
	}
	echoed := strings.Contains(out.String(), "binary-typed")
	_ = c.WriteMessage(websocket.TextMessage, enc("\x04"))
	time.Sleep(time.Second)
	c.Close()
	evs := e.events(t, "prod-cluster", func(evs []schemas.Event) bool { return len(ofType[schemas.HttpDone](t, evs, schemas.TypeHttpDone)) > 0 })
	var frames strings.Builder
	for _, io := range ofType[schemas.KubeIo](t, evs, schemas.TypeKubeIo) {
		for _, f := range io.Frames {
			frames.WriteString(f.Code + ":" + f.Data + "|")
		}
	}
	t.Logf("echoed by the pod: %v (%q); recorded: %q", echoed, out.String(), truncate(frames.String(), 400))
	if echoed {
		require.Contains(t, frames.String(), "i:binary-typed", "keystrokes in binary frames on the base64 protocol reach the pod unrecorded")
	}
}

package http_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ghttp "github.com/gatehouse/gatehouse/proxy/http"
	"github.com/gatehouse/gatehouse/schemas"
)

// What a code review found, kept as tests.

// TestUpgradedConnectionIsReleased: a WebSocket that ended releases its connection (it
// counted against max_connections for ever: net/http reports nothing after a hijack) and
// ends its session; the upgrade's last recording comes before its http.done, and
// session.end last.
func TestUpgradedConnectionIsReleased(t *testing.T) {
	e := start(t)
	pem, _ := os.ReadFile(e.caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}
	c, resp, err := d.Dial("wss://"+e.addr+"/orders/ws", http.Header{"Authorization": {"Bearer " + e.token}})
	require.NoError(t, err, "%v", resp)
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte("hi")))
	_, _, err = c.ReadMessage()
	require.NoError(t, err)
	c.Close()
	evs := e.events(t, "orders", func(evs []schemas.Event) bool { return hasType(evs, schemas.TypeSessionEnd, nil) })
	require.Eventually(t, func() bool { return ghttp.OpenConns(e.srv) == 0 && ghttp.TrackedConns(e.srv) == 0 }, 10*time.Second, 10*time.Millisecond,
		"the upgraded connection is still counted")
	last := map[string]int{}
	for i, ev := range evs {
		last[ev.Type] = i
	}
	require.Less(t, last[schemas.TypeHttpWs], last[schemas.TypeHttpDone], "the WebSocket's recording goes before its end")
	require.Equal(t, len(evs)-1, last[schemas.TypeSessionEnd], "session.end is the last event")
}

// TestHoldGivesUpWhenTheClientGoes: a client that goes away during a hold cancels its
// approval (approval.cancelled, client_disconnected) — the hold was given the request's
// context, and its shutdown branch won.
func TestHoldGivesUpWhenTheClientGoes(t *testing.T) {
	e := start(t)
	const n = 3
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/orders/payments", strings.NewReader(`{"amount": 5000}`))
		req.Header.Set("Authorization", "Bearer "+e.token)
		req.Header.Set("Content-Type", "application/json")
		done := make(chan struct{})
		go func() {
			defer close(done)
			if resp, err := e.client(t).Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		want := i + 1
		e.events(t, "orders", func(evs []schemas.Event) bool {
			return len(ofType[schemas.ApprovalRequested](t, evs, schemas.TypeApprovalRequested)) >= want
		})
		cancel()
		<-done
	}
	evs := e.events(t, "orders", func(evs []schemas.Event) bool {
		return len(ofType[schemas.ApprovalCancelled](t, evs, schemas.TypeApprovalCancelled)) >= n
	})
	for _, c := range ofType[schemas.ApprovalCancelled](t, evs, schemas.TypeApprovalCancelled) {
		require.Equal(t, "client_disconnected", c.Reason)
	}
}

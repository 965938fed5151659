package http_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// TestAttackSlowRead (found by the attack round, fixed): a client that asks for a large
// response and stops reading is cut off after the body timeout (each write is bounded),
// rather than holding its connection, its upstream request and its buffers for as long as
// it likes. The request's end is recorded while the client still reads nothing.
func TestAttackSlowRead(t *testing.T) {
	e := start(t)
	c := e.rawConn(t)
	_, err := io.WriteString(c, "GET /orders/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+e.token+"\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	_, err = io.ReadFull(resp.Body, make([]byte, 1<<16))
	require.NoError(t, err)
	// Stop reading: the gateway gives up on the request (harness body timeout: 10 s).
	evs := e.events(t, "orders", func(evs []schemas.Event) bool {
		return hasType(evs, schemas.TypeHttpDone, func(p json.RawMessage) bool { return !strings.Contains(string(p), `"status":"ok"`) })
	})
	done := ofType[schemas.HttpDone](t, evs, schemas.TypeHttpDone)
	require.Less(t, done[len(done)-1].BytesOut, uint64(90<<20), "the response was cut, not sent whole")
}

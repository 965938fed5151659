package kube

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/moby/spdystream/spdy"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// msgLog is a terminal recorder that keeps the channel.k8s.io messages it is handed.
type msgLog struct {
	msgs   []string
	closed bool
}

func (m *msgLog) Message(fromClient bool, op string, data []byte, size uint64, complete bool) {
	from := "s"
	if fromClient {
		from = "c"
	}
	m.msgs = append(m.msgs, fmt.Sprintf("%s %s %d:%s", from, op, data[0], data[1:]))
}

func (m *msgLog) Close() { m.closed = true }

// spdyFrames writes frames with a framer of their own (its own header compression, as
// each side of a connection has).
func spdyFrames(t testing.TB, frames ...spdy.Frame) []byte {
	t.Helper()
	var buf bytes.Buffer
	f, err := spdy.NewFramer(&buf, nil)
	require.NoError(t, err)
	for _, fr := range frames {
		require.NoError(t, f.WriteFrame(fr))
	}
	return buf.Bytes()
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// execSession is an exec's connection as kubectl and the API server speak it: the client
// opens error, stdin, stdout, stderr and resize streams, sends input and resizes; the
// server replies, writes output and the status (in two frames), and closes.
func execSession(t testing.TB) (client, server []byte) {
	fin := spdy.ControlFrameHeader{Flags: spdy.ControlFlagFin}
	client = spdyFrames(t,
		&spdy.SettingsFrame{FlagIdValues: []spdy.SettingsFlagIdValue{{Id: spdy.SettingsInitialWindowSize, Value: 1 << 20}}},
		&spdy.SynStreamFrame{StreamId: 1, Headers: hdr("streamtype", "error"), CFHeader: fin},
		&spdy.SynStreamFrame{StreamId: 3, Headers: hdr("streamtype", "stdin")},
		&spdy.SynStreamFrame{StreamId: 5, Headers: hdr("streamtype", "stdout"), CFHeader: fin},
		&spdy.SynStreamFrame{StreamId: 7, Headers: hdr("streamtype", "stderr"), CFHeader: fin},
		&spdy.SynStreamFrame{StreamId: 9, Headers: hdr("streamtype", "resize")},
		&spdy.DataFrame{StreamId: 3, Data: []byte("some ")},
		&spdy.DataFrame{StreamId: 3, Data: []byte("input\n"), Flags: spdy.DataFlagFin},
		&spdy.DataFrame{StreamId: 9, Data: []byte(`{"Width":80,"Height":24}` + "\n" + `{"Width":100,`)},
		&spdy.DataFrame{StreamId: 9, Data: []byte(`"Height":40}` + "\n")},
		&spdy.PingFrame{Id: 1},
		&spdy.WindowUpdateFrame{StreamId: 5, DeltaWindowSize: 100},
	)
	server = spdyFrames(t,
		&spdy.SynReplyFrame{StreamId: 1},
		&spdy.SynReplyFrame{StreamId: 3, CFHeader: fin},
		&spdy.SynReplyFrame{StreamId: 5},
		&spdy.SynReplyFrame{StreamId: 7},
		&spdy.SynReplyFrame{StreamId: 9},
		&spdy.PingFrame{Id: 1},
		&spdy.DataFrame{StreamId: 5, Data: []byte("hi\n")},
		&spdy.DataFrame{StreamId: 7, Data: []byte("oops"), Flags: spdy.DataFlagFin},
		&spdy.HeadersFrame{StreamId: 5, Headers: hdr("x-extra", "1"), CFHeader: fin},
		&spdy.DataFrame{StreamId: 1, Data: []byte(`{"metadata":{},`)},
		&spdy.DataFrame{StreamId: 1, Data: []byte(`"status":"Success"}`), Flags: spdy.DataFlagFin},
		&spdy.RstStreamFrame{StreamId: 9, Status: spdy.Cancel},
		&spdy.DataFrame{StreamId: 9, Data: []byte("late")},
		&spdy.GoAwayFrame{LastGoodStreamId: 9},
	)
	return client, server
}

var execWant = []string{
	"c binary 0:some ",
	"c binary 0:input\n",
	`c binary 4:{"Width":80,"Height":24}`,
	`c binary 4:{"Width":100,"Height":40}`,
	"s binary 1:hi\n",
	"s binary 2:oops",
	`s binary 3:{"metadata":{},"status":"Success"}`,
}

// TestSPDYRecorderSplit: an exec's SPDY frames, both directions, split at every position,
// are handed to the terminal recorder as the channel.k8s.io messages WebSocket carries.
func TestSPDYRecorderSplit(t *testing.T) {
	client, server := execSession(t)
	for _, dir := range []struct {
		name string
		b    []byte
	}{{"client", client}, {"server", server}} {
		for i := 0; i <= len(dir.b); i++ {
			log := &msgLog{}
			var failed error
			r := newSPDYRecorder(execSink{term: log}, func(err error) { failed = err })
			if dir.name == "client" {
				require.NoError(t, r.Raw(true, client[:i]))
				require.NoError(t, r.Raw(true, client[i:]))
				require.NoError(t, r.Raw(false, server))
			} else {
				require.NoError(t, r.Raw(true, client))
				require.NoError(t, r.Raw(false, server[:i]))
				require.NoError(t, r.Raw(false, server[i:]))
			}
			r.Close()
			require.NoError(t, failed)
			require.Equal(t, joined(execWant), joined(log.msgs), "%s split at %d", dir.name, i)
			require.True(t, log.closed)
		}
	}
	// Byte by byte, through Message as proxy/http calls it.
	log := &msgLog{}
	r := newSPDYRecorder(execSink{term: log}, nil)
	for _, b := range client {
		r.Message(true, "raw", []byte{b}, 1, true)
	}
	for _, b := range server {
		r.Message(false, "raw", []byte{b}, 1, true)
	}
	r.Close()
	require.Equal(t, joined(execWant), joined(log.msgs))
}

// joined joins consecutive messages of the same direction and channel: a data frame
// split between reads is passed on in pieces.
func joined(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		if n := len(out); n > 0 && len(m) > 11 && strings.HasPrefix(out[n-1], m[:11]) && m[9] < '3' {
			out[n-1] += m[11:]
			continue
		}
		out = append(out, m)
	}
	return out
}

// TestSPDYRecorderLargeData: a data frame of any size SPDY allows is passed on as it comes,
// not held.
func TestSPDYRecorderLargeData(t *testing.T) {
	big := bytes.Repeat([]byte("z"), 3<<20)
	client := spdyFrames(t, &spdy.SynStreamFrame{StreamId: 1, Headers: hdr("streamtype", "stdout")})
	server := spdyFrames(t, &spdy.DataFrame{StreamId: 1, Data: big}, &spdy.DataFrame{StreamId: 1, Data: []byte("after")})
	log := &msgLog{}
	r := newSPDYRecorder(execSink{term: log}, nil)
	require.NoError(t, r.Raw(true, client))
	for len(server) > 0 {
		n := min(32<<10, len(server))
		require.NoError(t, r.Raw(false, server[:n]))
		server = server[n:]
	}
	require.LessOrEqual(t, cap(r.dirs[0].buf), 64<<10)
	r.Close()
	require.Equal(t, []string{"s binary 1:" + string(big) + "after"}, joined(log.msgs))
}

// TestSPDYRecorderRefuses: what is not a SPDY/3.1 connection the gateway can read stops the
// recording, reported once.
func TestSPDYRecorderRefuses(t *testing.T) {
	syn := spdyFrames(t, &spdy.SynStreamFrame{StreamId: 1, Headers: hdr("streamtype", "stdout")})
	corrupt := append([]byte(nil), syn...)
	corrupt[18] ^= 0xff                         // the zlib header of the header block
	big := []byte{0x80, 3, 0, 1, 0, 0x20, 0, 0} // a SYN_STREAM of 2 MiB
	for name, b := range map[string][]byte{
		"http":            []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"version 2":       {0x80, 2, 0, 1, 0, 0, 0, 0},
		"unknown control": {0x80, 3, 0, 42, 0, 0, 0, 0},
		"too large":       big,
		"stream zero":     {0, 0, 0, 0, 0, 0, 0, 1, 'x'},
		"corrupt headers": corrupt,
		"left over":       {0x80, 3, 0, 3, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 5, 0}, // RST_STREAM of 9 bytes
		"opened twice": spdyFrames(t, &spdy.SynStreamFrame{StreamId: 3, Headers: hdr("streamtype", "stdin")},
			&spdy.SynStreamFrame{StreamId: 3, Headers: hdr("streamtype", "stdin")}),
	} {
		n := 0
		log := &msgLog{}
		r := newSPDYRecorder(execSink{term: log}, func(error) { n++ })
		err := r.Raw(true, b)
		require.ErrorIs(t, err, errSPDYProtocol, name)
		require.ErrorIs(t, r.Raw(true, []byte{0, 0, 0, 1, 0, 0, 0, 1, 'x'}), errSPDYProtocol, name)
		r.Close()
		require.Equal(t, 1, n, name)
		require.Empty(t, log.msgs, name)
	}
	// Too many streams open at once.
	var frames []spdy.Frame
	for i := 0; i <= maxSPDYStreams; i++ {
		frames = append(frames, &spdy.SynStreamFrame{StreamId: spdy.StreamId(2*i + 1), Headers: hdr("streamtype", "data", "port", "80")})
	}
	r := newSPDYRecorder(execSink{term: &msgLog{}}, nil)
	require.ErrorIs(t, r.Raw(true, spdyFrames(t, frames...)), errSPDYProtocol)
}

// FuzzSPDYRecorder: any bytes, either way, are read or refused, never a panic.
func FuzzSPDYRecorder(f *testing.F) {
	client, server := execSession(f)
	f.Add(client, server)
	f.Add([]byte{0x80, 3, 0, 1, 0, 0, 0, 0}, []byte{0, 0, 0, 1, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, c, s []byte) {
		r := newSPDYRecorder(execSink{term: &msgLog{}}, nil)
		errC := r.Raw(true, c)
		errS := r.Raw(false, s)
		r.Close()
		for _, err := range []error{errC, errS} {
			if err != nil && !errors.Is(err, errSPDYProtocol) {
				t.Fatalf("unexpected error %v", err)
			}
		}
	})
}

// TestSPDYPortForward: a port-forward's connections are recorded by port, type and byte
// counts when they end (reset, closed both ways, or the connection's end); what they carry
// is not.
func TestSPDYPortForward(t *testing.T) {
	fin := spdy.ControlFrameHeader{Flags: spdy.ControlFlagFin}
	client := spdyFrames(t,
		&spdy.SynStreamFrame{StreamId: 1, Headers: hdr("streamtype", "error", "port", "8080", "requestid", "0"), CFHeader: fin},
		&spdy.SynStreamFrame{StreamId: 3, Headers: hdr("streamtype", "data", "port", "8080", "requestid", "0")},
		&spdy.DataFrame{StreamId: 3, Data: []byte("GET / HTTP/1.0\r\n\r\n"), Flags: spdy.DataFlagFin},
		&spdy.SynStreamFrame{StreamId: 5, Headers: hdr("streamtype", "error", "port", "9090", "requestid", "1"), CFHeader: fin},
		&spdy.SynStreamFrame{StreamId: 7, Headers: hdr("streamtype", "data", "port", "9090", "requestid", "1")},
		&spdy.DataFrame{StreamId: 7, Data: []byte("x")},
	)
	server := spdyFrames(t,
		&spdy.SynReplyFrame{StreamId: 1},
		&spdy.SynReplyFrame{StreamId: 3},
		&spdy.DataFrame{StreamId: 3, Data: []byte("HTTP/1.0 200 OK\r\n\r\nhello")},
		&spdy.DataFrame{StreamId: 3, Flags: spdy.DataFlagFin},
		&spdy.DataFrame{StreamId: 1, Data: []byte("no error"), Flags: spdy.DataFlagFin},
		&spdy.SynReplyFrame{StreamId: 5},
		&spdy.DataFrame{StreamId: 5, Data: []byte("dial tcp 127.0.0.1:9090: connection refused\n")},
		&spdy.RstStreamFrame{StreamId: 5, Status: spdy.Cancel},
	)
	var got []string
	sink := &portSink{record: func(frames []schemas.WSFrame, chunk uint32) {
		require.Equal(t, uint32(0), chunk)
		for _, f := range frames {
			got = append(got, f.From+" "+f.Op+" "+f.Data)
		}
	}}
	r := newSPDYRecorder(sink, nil)
	require.NoError(t, r.Raw(true, client))
	require.NoError(t, r.Raw(false, server))
	r.Close()
	require.Equal(t, []string{
		"server text port 8080 data stream: 18 bytes from the client, 24 from the server",
		"server text port 8080 error stream: 0 bytes from the client, 8 from the server: no error",
		"server text port 9090 error stream: 0 bytes from the client, 44 from the server: dial tcp 127.0.0.1:9090: connection refused",
		"server text port 9090 data stream: 1 bytes from the client, 0 from the server",
	}, got)
}

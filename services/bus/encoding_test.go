package bus_test

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
)

func TestAuditDataEncoding(t *testing.T) {
	events := []byte(strings.Repeat(`{"id":"x","type":"db.query","identity":{"subject":"svc-orders"}}`+"\n", 40))
	events = events[:len(events)-1]

	// A batch is compressed, and reads back byte for byte.
	m := nats.NewMsg("gh.audit.demo.s.batch")
	buf := bus.CompressAudit(m, events, nil)
	require.NotNil(t, buf)
	require.Equal(t, bus.EncodingS2, m.Header.Get(bus.HeaderEncoding))
	require.Less(t, len(m.Data), len(events)/4)
	got, err := bus.AuditData(m.Header, m.Data)
	require.NoError(t, err)
	require.Equal(t, events, got)

	// The returned buffer is reused when it is large enough.
	m2 := nats.NewMsg("gh.audit.demo.s.batch")
	buf2 := bus.CompressAudit(m2, events, buf)
	require.Equal(t, &buf[:1][0], &buf2[:1][0], "the buffer passed in is the one used")
	got, err = bus.AuditData(m2.Header, m2.Data)
	require.NoError(t, err)
	require.Equal(t, events, got)

	// A small event goes as it is, without the header; so does anything written by a
	// component that does not compress.
	small := []byte(`{"id":"y","type":"session.end"}`)
	m3 := nats.NewMsg("gh.audit.demo.s.session.end")
	require.Nil(t, bus.CompressAudit(m3, small, nil))
	require.Empty(t, m3.Header.Get(bus.HeaderEncoding))
	require.Equal(t, small, m3.Data)
	got, err = bus.AuditData(m3.Header, m3.Data)
	require.NoError(t, err)
	require.Equal(t, small, got)
	got, err = bus.AuditData(nil, small)
	require.NoError(t, err)
	require.Equal(t, small, got)

	// Data that does not compress goes as it is, and the buffer offered stays the caller's.
	random := make([]byte, 4096)
	_, _ = rand.Read(random)
	m4 := nats.NewMsg("gh.audit.demo.s.batch")
	require.Nil(t, bus.CompressAudit(m4, random, buf))
	require.Empty(t, m4.Header.Get(bus.HeaderEncoding))
	require.Equal(t, random, m4.Data)

	// Bad messages are errors, never events.
	h := nats.Header{}
	h.Set(bus.HeaderEncoding, "zstd")
	_, err = bus.AuditData(h, m.Data)
	require.ErrorContains(t, err, `unknown Gh-Encoding "zstd"`)
	h.Set(bus.HeaderEncoding, bus.EncodingS2)
	_, err = bus.AuditData(h, []byte("\x05garbage"))
	require.ErrorContains(t, err, "s2")
	_, err = bus.AuditData(h, m.Data[:len(m.Data)/2])
	require.ErrorContains(t, err, "s2")
	// A block claiming to decode to more than the bound is refused before any is decoded.
	huge := s2.Encode(nil, bytes.Repeat([]byte{'a'}, bus.MaxAuditData+1))
	_, err = bus.AuditData(h, huge)
	require.ErrorContains(t, err, "more than the")
}

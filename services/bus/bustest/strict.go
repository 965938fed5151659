package bustest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
)

// PublishStrict publishes total audit events as a strict proxy does: the next goes out once
// this one is acknowledged, and one not acknowledged within 2 s is sent again under the
// same message id (ev-0000, ev-0001, ...; the id is also the body). acked is called after
// each acknowledgement. It returns when all are acknowledged, or with an error when ctx
// ends first.
func PublishStrict(ctx context.Context, js jetstream.JetStream, total int, acked func(i int)) error {
	for i := range total {
		id := fmt.Sprintf("ev-%04d", i)
		for {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.Publish(pctx, bus.AuditSubject("demo", "s1", "db.query"), []byte(id), jetstream.WithMsgID(id))
			pcancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("event %s never acknowledged: %w", id, err)
			}
		}
		acked(i)
	}
	return nil
}

// RequireExactlyOnce checks that stream holds each of PublishStrict's total events exactly
// once: every stored message, by sequence, from the stream's leader.
func RequireExactlyOnce(ctx context.Context, t testing.TB, stream jetstream.Stream, total int) {
	t.Helper()
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	seen := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		var m *jetstream.RawStreamMsg
		require.Eventually(t, func() bool { m, err = stream.GetMsg(ctx, seq); return err == nil }, 30*time.Second, 20*time.Millisecond, "message %d: %v", seq, err)
		require.Equal(t, string(m.Data), m.Header.Get(nats.MsgIdHdr))
		seen[string(m.Data)]++
	}
	require.EqualValues(t, total, info.State.Msgs, "no event stored twice")
	for i := range total {
		require.Equal(t, 1, seen[fmt.Sprintf("ev-%04d", i)], "event %d", i)
	}
}

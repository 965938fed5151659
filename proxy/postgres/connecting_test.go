package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// At most MaxConnecting backend connections to one resource are opened at once; the next
// waits its turn, and gives up with a clear error when its startup deadline passes. Other
// resources are not held up.
func TestConnectTurn(t *testing.T) {
	s := &Server{cfg: Config{MaxConnecting: 2}}
	ctx := context.Background()
	r1, err := s.connectTurn(ctx, "demo")
	require.NoError(t, err)
	r2, err := s.connectTurn(ctx, "demo")
	require.NoError(t, err)
	other, err := s.connectTurn(ctx, "other")
	require.NoError(t, err, "another resource has turns of its own")
	other()

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = s.connectTurn(short, "demo")
	require.True(t, errors.Is(err, errConnectTurn))
	require.Contains(t, err.Error(), "max_connecting")

	got := make(chan func(), 1)
	go func() {
		r, err := s.connectTurn(ctx, "demo")
		if err == nil {
			got <- r
		}
	}()
	select {
	case <-got:
		t.Fatal("a third connection got a turn while two were being opened")
	case <-time.After(20 * time.Millisecond): // (a chance to go wrong; not a wait for a condition)
	}
	r1()
	r3 := <-got // its turn comes once one is done
	r2()
	r3()
}

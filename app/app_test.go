package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestResolveOrdersDependencies(t *testing.T) {
	order, err := resolve([]string{"all"})
	require.NoError(t, err)
	pos := map[string]int{}
	for i, n := range order {
		pos[n] = i
	}
	for name, m := range modules {
		if _, ok := pos[name]; !ok {
			continue
		}
		for _, d := range m.deps {
			require.Less(t, pos[d], pos[name], "%s must start after %s", name, d)
		}
	}
	for _, n := range []string{"nats", "bus", "policy", "proxy-postgres", "ingest", "query"} {
		require.Contains(t, order, n)
	}
	only, err := resolve([]string{"policy"})
	require.NoError(t, err)
	require.NotContains(t, only, "ingest")
	require.NotContains(t, only, "proxy-postgres")

	_, err = resolve([]string{"proxy-mysql"})
	require.ErrorContains(t, err, `unknown target "proxy-mysql"`)
}

func TestTargetsListsPublicOnes(t *testing.T) {
	all := strings.Join(Targets(), "\n")
	for _, n := range []string{"all", "policy", "proxy-postgres", "ingest", "query", "nats"} {
		require.Contains(t, all, n)
	}
	require.NotContains(t, all, "publisher")
}

func TestRunServicesStopsEverythingWhenOneFails(t *testing.T) {
	var events []string
	rec := func(s string) { events = append(events, s) }
	svc := func(name string, runErr error) *Service {
		return &Service{Name: name,
			Start: func(context.Context) error { rec("start " + name); return nil },
			Run: func(ctx context.Context) error {
				if runErr != nil {
					return runErr
				}
				<-ctx.Done()
				return nil
			},
			Stop: func(context.Context) error { rec("stop " + name); return nil },
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := runServices(ctx, log, []*Service{svc("a", nil), svc("b", errors.New("boom")), svc("c", nil)}, nil)
	require.ErrorContains(t, err, "b: boom")
	require.Equal(t, []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}, events)
}

func TestRunServicesUndoesAFailedStart(t *testing.T) {
	var stopped []string
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	err := runServices(context.Background(), log, []*Service{
		{Name: "a", Stop: func(context.Context) error { stopped = append(stopped, "a"); return nil }},
		{Name: "b", Start: func(context.Context) error { return errors.New("no port") }},
		{Name: "c", Stop: func(context.Context) error { stopped = append(stopped, "c"); return nil }},
	}, func() { t.Error("ready called after a failed start") })
	require.ErrorContains(t, err, "start b: no port")
	require.Equal(t, []string{"a"}, stopped)
}

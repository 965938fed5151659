package app

import (
	"context"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
)

func (a *App) clickhouseService() *Service {
	return &Service{
		Start: func(ctx context.Context) error {
			ch, err := ingest.Open(a.cfg.ClickHouse)
			if err != nil {
				return err
			}
			a.ch = ch
			return nil
		},
		Stop: func(context.Context) error { return a.ch.Close() },
	}
}

func (a *App) ingestService() *Service {
	var in *ingest.Ingester
	return &Service{
		Start: func(ctx context.Context) error {
			in = ingest.New(ingest.Config{Database: a.cfg.ClickHouse.Database, BatchSize: a.cfg.Ingest.BatchSize, FlushInterval: a.cfg.Ingest.FlushInterval},
				a.bus.JS, a.ch, a.reg, a.component("ingest"))
			return in.Start(ctx)
		},
		Run: func(ctx context.Context) error { return in.Run(ctx) },
	}
}

func (a *App) queryService() *Service {
	return &Service{Start: func(ctx context.Context) error {
		query.New(a.ch, a.cfg.ClickHouse.Database, a.verifier, a.cfg.Query.AuditorGroups, a.component("query")).Register(a.echo)
		return nil
	}}
}

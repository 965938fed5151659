package app

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/services/sinks"
)

// sinksService pushes the audit trail to the configured SIEM sinks.
func (a *App) sinksService() *Service {
	var all []*sinks.HTTP
	return &Service{
		Start: func(ctx context.Context) error {
			for _, sc := range a.cfg.Sinks {
				s := &sinks.HTTP{Name: sc.Name, URL: sc.URL, BatchSize: sc.BatchSize, Flush: sc.Flush, Log: a.component("sinks")}
				if sc.TokenFile != "" {
					b, err := os.ReadFile(sc.TokenFile)
					if err != nil {
						return err
					}
					s.Token = strings.TrimSpace(string(b))
				}
				if err := s.Start(ctx, a.bus.JS); err != nil {
					return err
				}
				all = append(all, s)
			}
			return nil
		},
		Run: func(ctx context.Context) error {
			if len(all) == 0 {
				<-ctx.Done() // nothing to push; a service stops only with the process
				return nil
			}
			var wg sync.WaitGroup
			errs := make([]error, len(all))
			for i, s := range all {
				wg.Add(1)
				go func() { defer wg.Done(); errs[i] = s.Run(ctx) }()
			}
			wg.Wait()
			return errors.Join(errs...)
		},
	}
}

// Package app runs Gatehouse components as services with a lifecycle (start, run, stop), in
// dependency order, any subset of them in one process (`gatehouse run --target=...`).
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Service is a component with a lifecycle. Start returns once the service is ready; Run
// blocks until ctx ends (returning early, even with nil, is a failure that stops the
// process); Stop releases what Start acquired.
type Service struct {
	Name  string
	Start func(ctx context.Context) error
	Run   func(ctx context.Context) error
	Stop  func(ctx context.Context) error
}

// runServices starts services in order, runs them until ctx ends or one fails, then stops
// the started ones in reverse order. ready is called once every service has started.
func runServices(ctx context.Context, log *slog.Logger, svcs []*Service, ready func()) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var started []*Service
	stopAll := func() error {
		var errs []error
		stopCtx := context.WithoutCancel(ctx)
		for i := len(started) - 1; i >= 0; i-- {
			s := started[i]
			if s.Stop == nil {
				continue
			}
			log.Debug("stopping", "service", s.Name)
			if err := s.Stop(stopCtx); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", s.Name, err))
			}
		}
		return errors.Join(errs...)
	}
	for _, s := range svcs {
		log.Debug("starting", "service", s.Name)
		if s.Start != nil {
			if err := s.Start(runCtx); err != nil {
				return errors.Join(fmt.Errorf("start %s: %w", s.Name, err), stopAll())
			}
		}
		started = append(started, s)
	}
	if ready != nil {
		ready()
	}
	failed := make(chan error, len(svcs))
	running := 0
	for _, s := range svcs {
		if s.Run == nil {
			continue
		}
		running++
		go func(s *Service) {
			err := s.Run(runCtx)
			if runCtx.Err() == nil {
				if err == nil {
					err = errors.New("stopped unexpectedly")
				}
				failed <- fmt.Errorf("%s: %w", s.Name, err)
				return
			}
			failed <- nil
		}(s)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-failed:
		log.Error("service failed; stopping everything", "err", runErr)
		running--
	}
	cancel()
	for ; running > 0; running-- {
		if err := <-failed; err != nil && runErr == nil {
			runErr = err
		}
	}
	return errors.Join(runErr, stopAll())
}

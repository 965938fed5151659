package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/sinks"
)

// sinksService pushes the audit trail to the configured SIEM sinks.
func (a *App) sinksService() *Service {
	var all []*sinks.Sink
	return &Service{
		Start: func(ctx context.Context) error {
			var metrics *sinks.Metrics
			if len(a.cfg.Sinks) > 0 {
				metrics = sinks.NewMetrics(a.reg)
			}
			for i, sc := range a.cfg.Sinks {
				to, err := deliverer(sc, a.component("sinks"))
				if err != nil {
					return fmt.Errorf("sinks[%d] (%s): %w", i, sc.Name, err)
				}
				s := &sinks.Sink{Name: sc.Name, BatchSize: sc.BatchSize, Flush: sc.Flush, To: to, Log: a.component("sinks"), Metrics: metrics}
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

// deliverer builds a sink's destination from its configuration.
func deliverer(sc config.Sink, log *slog.Logger) (sinks.Deliverer, error) {
	switch sc.Type {
	case "http":
		h := &sinks.HTTP{URL: sc.URL}
		if sc.TokenFile != "" {
			b, err := os.ReadFile(sc.TokenFile)
			if err != nil {
				return nil, fmt.Errorf("token_file: %w", err)
			}
			h.Token = strings.TrimSpace(string(b))
		}
		return h, nil
	case "syslog":
		s := &sinks.Syslog{Address: sc.Address, Facility: 13, Hostname: sc.Hostname, MaxMessage: sc.MaxMessageBytes}
		if f, ok := config.SyslogFacilities[sc.Facility]; ok {
			s.Facility = f
		}
		if s.Hostname == "" {
			s.Hostname, _ = os.Hostname()
		}
		if sc.TLS == nil {
			if host, _, _ := net.SplitHostPort(sc.Address); !isLoopback(host) {
				log.Warn("syslog sink without TLS: the audit trail crosses the network in clear", "sink", sc.Name, "address", sc.Address)
			}
			return s, nil
		}
		tc, err := sinkTLS(sc)
		if err != nil {
			return nil, err
		}
		s.TLS = tc
		return s, nil
	}
	return nil, fmt.Errorf("unknown sink type %q", sc.Type)
}

func sinkTLS(sc config.Sink) (*tls.Config, error) {
	t := sc.TLS
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if tc.ServerName == "" {
		tc.ServerName, _, _ = net.SplitHostPort(sc.Address)
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificate in it", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

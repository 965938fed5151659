package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/services/bus"
)

// Service answers gh.policy.decide requests (queue group "policy", so any number of copies
// share the load).
type Service struct {
	nc     *nats.Conn
	log    *slog.Logger
	engine atomic.Pointer[Engine]
	sub    *nats.Subscription

	// Grants, when set, gives each request the caller's grants.
	Grants func(subject, resource string, now time.Time) []Grant
	// Catalogs, when set, gives each request its resource's catalog.
	Catalogs *Catalogs

	decisions *prometheus.CounterVec
	latency   prometheus.Histogram
}

// NewService makes a decision service over an engine.
func NewService(nc *nats.Conn, e *Engine, reg prometheus.Registerer, log *slog.Logger) *Service {
	s := &Service{nc: nc, log: log,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_policy_decisions_total", Help: "Decisions made, by effect."}, []string{"effect"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_policy_decide_seconds", Help: "Time to parse and evaluate one request.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 16)}),
	}
	reg.MustRegister(s.decisions, s.latency)
	s.engine.Store(e)
	return s
}

// SetEngine swaps the rules in force and announces the new revision at once, so that
// proxies drop decisions cached under the old one.
func (s *Service) SetEngine(e *Engine) {
	s.engine.Store(e)
	if err := s.nc.Publish(bus.SubjectPolicyRevision, []byte(strconv.FormatUint(e.Revision(), 10))); err != nil {
		s.log.Warn("revision announcement failed", "err", err)
	}
}

// Engine is the engine in force.
func (s *Service) Engine() *Engine { return s.engine.Load() }

// Revision is the revision in force.
func (s *Service) Revision() uint64 { return s.engine.Load().Revision() }

// Start subscribes.
func (s *Service) Start(context.Context) error {
	sub, err := s.nc.QueueSubscribe(bus.SubjectDecide, bus.QueueDecide, s.handle)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", bus.SubjectDecide, err)
	}
	s.sub = sub
	return s.nc.Flush()
}

// Announce publishes the revision in force on gh.policy.revision at once and then every
// few seconds until ctx ends, so that proxies drop cached decisions of other revisions.
func (s *Service) Announce(ctx context.Context) error {
	t := time.NewTicker(AnnounceInterval)
	defer t.Stop()
	for {
		rev := strconv.FormatUint(s.engine.Load().Revision(), 10)
		if err := s.nc.Publish(bus.SubjectPolicyRevision, []byte(rev)); err != nil {
			s.log.Warn("revision announcement failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// AnnounceInterval is how often the revision in force is announced.
const AnnounceInterval = 5 * time.Second

// Stop drains the subscription so that requests already received are answered.
func (s *Service) Stop(context.Context) error {
	if s.sub != nil {
		return s.sub.Drain()
	}
	return nil
}

func (s *Service) handle(m *nats.Msg) {
	start := time.Now()
	var req Request
	var d Decision
	if err := json.Unmarshal(m.Data, &req); err != nil {
		d = Decision{Effect: EffectDeny, Reason: "malformed decision request: " + err.Error()}
	} else {
		req.Grants = nil // never the caller's word for it
		if s.Grants != nil {
			req.Grants = s.Grants(req.Identity.Subject, req.Resource.Name, start)
		}
		if s.Catalogs != nil {
			req.Catalog = s.Catalogs.For(req.Resource.Name, req.CatalogVersion)
		}
		d = s.engine.Load().Decide(&req, start)
	}
	b, _ := json.Marshal(&d)
	if err := m.Respond(b); err != nil {
		s.log.Warn("decision reply failed", "err", err)
	}
	s.decisions.WithLabelValues(d.Effect).Inc()
	s.latency.Observe(time.Since(start).Seconds())
}

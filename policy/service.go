package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/schemas"
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

	// Requests are decided concurrently: small ones in a lane of their own, so that a few
	// large statements (a parse of a megabyte takes about a second) cannot hold up
	// everyone's decisions; at most maxBigWaiting large ones wait for the large lane.
	small, big chan struct{}
	bigWaiting atomic.Int32
	inflight   sync.WaitGroup
}

// Lanes of the policy service: a request over bigRequest bytes is large.
const (
	bigRequest    = 64 << 10
	maxBigWaiting = 16
)

// NewService makes a decision service over an engine.
func NewService(nc *nats.Conn, e *Engine, reg prometheus.Registerer, log *slog.Logger) *Service {
	s := &Service{nc: nc, log: log,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_policy_decisions_total", Help: "Decisions made, by effect."}, []string{"effect"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_policy_decide_seconds", Help: "Time to parse and evaluate one request.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 16)}),
	}
	reg.MustRegister(s.decisions, s.latency)
	s.engine.Store(e)
	s.small = make(chan struct{}, 4*runtime.GOMAXPROCS(0))
	s.big = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))
	return s
}

// SetEngine swaps the rules in force and announces the new revision at once, so that
// proxies drop decisions cached under the old one.
func (s *Service) SetEngine(e *Engine) {
	s.engine.Store(e)
	if err := s.nc.Publish(schemas.SubjectPolicyRevision, []byte(strconv.FormatUint(e.Revision(), 10))); err != nil {
		s.log.Warn("revision announcement failed", "err", err)
	}
}

// Engine is the engine in force.
func (s *Service) Engine() *Engine { return s.engine.Load() }

// Revision is the revision in force.
func (s *Service) Revision() uint64 { return s.engine.Load().Revision() }

// Start subscribes.
func (s *Service) Start(context.Context) error {
	sub, err := s.nc.QueueSubscribe(schemas.SubjectDecide, schemas.QueueDecide, s.dispatch)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", schemas.SubjectDecide, err)
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
		if err := s.nc.Publish(schemas.SubjectPolicyRevision, []byte(rev)); err != nil {
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

// Stop drains the subscription and waits for the requests received to be answered.
func (s *Service) Stop(ctx context.Context) error {
	var err error
	if s.sub != nil {
		err = s.sub.Drain()
		// Drain returns at once; the subscription is invalid once every message received
		// has been handed to dispatch.
		for s.sub.IsValid() && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	s.inflight.Wait()
	return err
}

// dispatch hands a request to its lane. The subscription waits while the small lane is
// full (back pressure, as one goroutine would); a large request waits in a goroutine of
// its own, and is refused at once when too many wait.
func (s *Service) dispatch(m *nats.Msg) {
	s.inflight.Add(1)
	if len(m.Data) <= bigRequest && m.Header.Get(schemas.HeaderDecideEncoding) == "" {
		s.small <- struct{}{}
		go func() {
			defer s.inflight.Done()
			defer func() { <-s.small }()
			s.handle(m)
		}()
		return
	}
	if s.bigWaiting.Add(1) > maxBigWaiting {
		s.bigWaiting.Add(-1)
		defer s.inflight.Done()
		s.reply(m, time.Now(), schemas.DecisionReply{Effect: schemas.EffectDeny, Reason: fmt.Sprintf("the policy service is deciding %d large statements already; refusing (fail closed): try again", maxBigWaiting)})
		return
	}
	go func() {
		defer s.inflight.Done()
		s.big <- struct{}{}
		s.bigWaiting.Add(-1)
		defer func() { <-s.big }()
		s.handle(m)
	}()
}

func (s *Service) handle(m *nats.Msg) {
	start := time.Now()
	var req Input
	var d schemas.DecisionReply
	data, err := decodeRequest(m)
	if err == nil {
		err = json.Unmarshal(data, &req.DecisionRequest)
	}
	if err == nil && req.HTTP != nil && req.HTTP.Body != nil {
		req.HTTP.Body, err = exactBody(data)
	}
	if err != nil {
		d = schemas.DecisionReply{Effect: schemas.EffectDeny, Reason: "malformed decision request: " + err.Error()}
	} else {
		// The grants are the service's own (never the caller's word for them).
		if s.Grants != nil {
			req.Grants = s.Grants(req.Identity.Subject, req.Resource.Name, start)
		}
		if s.Catalogs != nil && req.SQL != nil {
			req.Catalog = s.Catalogs.For(req.Resource.Name, req.SQL.CatalogVersion)
		}
		d = s.engine.Load().Decide(&req, start)
	}
	s.reply(m, start, d)
}

// exactBody is the http part's body decoded again with its numbers kept as written
// (json.Number): decoded as float64, an identifier past 2^53 would compare as another.
func exactBody(data []byte) (any, error) {
	var raw struct {
		HTTP struct {
			Body json.RawMessage `json:"body"`
		} `json:"http"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw.HTTP.Body))
	dec.UseNumber()
	var body any
	if err := dec.Decode(&body); err != nil {
		return nil, fmt.Errorf("http.body: %w", err)
	}
	return body, nil
}

// decodeRequest is a request's JSON, decompressed when the proxy compressed it (to at
// most what a statement may be, and its envelope).
func decodeRequest(m *nats.Msg) ([]byte, error) {
	switch enc := m.Header.Get(schemas.HeaderDecideEncoding); enc {
	case "":
		return m.Data, nil
	case schemas.EncodingS2:
		n, err := s2.DecodedLen(m.Data)
		if err != nil {
			return nil, err
		}
		if n > 2*schemas.MaxStatementBytes {
			return nil, fmt.Errorf("%d bytes decompressed is over the %d-byte bound", n, 2*schemas.MaxStatementBytes)
		}
		return s2.Decode(nil, m.Data)
	default:
		return nil, fmt.Errorf("unknown %s %q", schemas.HeaderDecideEncoding, enc)
	}
}

func (s *Service) reply(m *nats.Msg, start time.Time, d schemas.DecisionReply) {
	b, _ := json.Marshal(&d)
	if err := m.Respond(b); err != nil {
		s.log.Warn("decision reply failed", "err", err)
	}
	s.decisions.WithLabelValues(d.Effect).Inc()
	s.latency.Observe(time.Since(start).Seconds())
}

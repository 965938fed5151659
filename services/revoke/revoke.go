// Package revoke ends access now: a revocation of an identity, a session or a grant is
// published on stream GH_REVOKE (subjects gh.revoke.<kind>.<value>, the latest per target
// kept), every proxy follows it from the start (so one that starts later knows it too),
// ends the matching live sessions and refuses new ones until the revocation lapses or is
// lifted.
package revoke

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/identity"
)

// Stream and subjects.
const (
	Stream  = "GH_REVOKE"
	Subject = bus.SubjectRevoke
)

// Kinds of revocation targets.
const (
	KindIdentity = "identity"
	KindSession  = "session"
	KindGrant    = "grant"
)

// BySystem is who revokes what Gatehouse ends by itself (an expired grant);
// ReasonGrantExpired is that revocation's reason.
const (
	BySystem           = "gatehouse"
	ReasonGrantExpired = "grant expired"
)

// Revocation is the state of one target.
type Revocation struct {
	Kind   string    `json:"kind"`
	Value  string    `json:"value"`
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by"`                // the revoker's token subject
	ByName string    `json:"by_name,omitempty"` // the revoker's name (identity.name), when known
	At     time.Time `json:"at"`
	Until  time.Time `json:"until,omitzero"` // zero: until lifted
	Lifted bool      `json:"lifted,omitempty"`
}

// Active reports whether the revocation is in force at now.
func (r *Revocation) Active(now time.Time) bool {
	return !r.Lifted && (r.Until.IsZero() || now.Before(r.Until))
}

// Why is the reason, for a message: "no reason given" when the revocation was published
// without one (the API requires one; older revocations and direct publishers may lack it).
func (r *Revocation) Why() string {
	if strings.TrimSpace(r.Reason) == "" {
		return "no reason given"
	}
	return r.Reason
}

// key is the target, kind:value.
func (r *Revocation) key() string { return r.Kind + ":" + r.Value }

// subject encodes the value so that any subject name, email or id is one subject token.
func subject(kind, value string) string {
	return Subject + "." + kind + "." + base64.RawURLEncoding.EncodeToString([]byte(value))
}

// EnsureStream creates GH_REVOKE.
func EnsureStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: Stream, Subjects: []string{Subject + ".>"},
		Storage: jetstream.FileStorage, MaxMsgsPerSubject: 1, Discard: jetstream.DiscardOld})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", Stream, err)
	}
	return nil
}

// Publish writes a revocation (or its lifting) and records it in the audit trail.
func Publish(ctx context.Context, js jetstream.JetStream, r Revocation, who schemas.Identity) error {
	if err := EnsureStream(ctx, js); err != nil {
		return err
	}
	b, _ := json.Marshal(r)
	if _, err := js.Publish(ctx, subject(r.Kind, r.Value), b); err != nil {
		return fmt.Errorf("publish revocation: %w", err)
	}
	p := &schemas.Revocation{Kind: r.Kind, Value: r.Value, Reason: r.Reason, Lifted: r.Lifted}
	if !r.Until.IsZero() {
		p.Until = r.Until.UTC().Format(time.RFC3339)
	}
	return bus.RecordControl(ctx, js, schemas.Event{Type: schemas.TypeRevocation, Identity: who, Payload: p.AppendJSON(nil)})
}

// Registry is a proxy's view of the revocations in force.
type Registry struct {
	log   *slog.Logger
	mu    sync.RWMutex
	byKey map[string]Revocation
	// OnRevoke is called for every revocation that comes into force (not at the initial
	// replay: no session is open then).
	OnRevoke func(Revocation)
}

// Follow replays GH_REVOKE and keeps following it. It returns once the replay is done: a
// proxy calls it before it admits a session.
func Follow(ctx context.Context, js jetstream.JetStream, log *slog.Logger, onRevoke func(Revocation)) (*Registry, error) {
	if err := EnsureStream(ctx, js); err != nil {
		return nil, err
	}
	r := &Registry{log: log, byKey: map[string]Revocation{}}
	cons, err := js.OrderedConsumer(ctx, Stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy, FilterSubjects: []string{Subject + ".>"}})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", Stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	var once sync.Once
	if info.NumPending == 0 {
		once.Do(func() { close(ready) })
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var rv Revocation
		if err := json.Unmarshal(m.Data(), &rv); err != nil {
			log.Error("unreadable revocation ignored", "subject", m.Subject(), "err", err)
		} else {
			r.mu.Lock()
			r.byKey[rv.key()] = rv
			r.mu.Unlock()
			select {
			case <-ready:
				if onRevoke != nil && rv.Active(time.Now()) {
					onRevoke(rv)
				}
			default:
			}
		}
		if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
			once.Do(func() { close(ready) })
		}
	})
	if err != nil {
		return nil, err
	}
	go func() { <-ctx.Done(); cc.Stop() }()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		cc.Stop()
		return nil, errors.New("revocations not replayed within 30s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r, nil
}

// Check returns the revocation in force for any of the targets, if one is.
func (r *Registry) Check(now time.Time, kind string, values ...string) (Revocation, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, v := range values {
		if rv, ok := r.byKey[kind+":"+v]; ok && rv.Active(now) {
			return rv, true
		}
	}
	return Revocation{}, false
}

// List returns the revocations in force.
func (r *Registry) List(now time.Time) []Revocation {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Revocation
	for _, rv := range r.byKey {
		if rv.Active(now) {
			out = append(out, rv)
		}
	}
	slices.SortFunc(out, func(a, b Revocation) int { return b.At.Compare(a.At) })
	return out
}

// API serves POST /api/v1/revocations {kind, value, reason, for} (and {"lift": true}) and
// GET /api/v1/revocations, for the admin groups.
type API struct {
	JS       jetstream.JetStream
	Registry *Registry
	Verifier *identity.Verifier
	Admins   []string
}

// Request is the body of POST /api/v1/revocations.
type Request struct {
	Kind   string `json:"kind"`
	Value  string `json:"value"`
	Reason string `json:"reason"`        // required
	For    string `json:"for,omitempty"` // a Go duration; empty: until lifted
	Lift   bool   `json:"lift,omitempty"`
}

// Register adds the routes.
func (a *API) Register(e *echo.Echo) {
	e.POST("/api/v1/revocations", a.post, a.Verifier.Middleware(a.Admins, "admin"))
	e.GET("/api/v1/revocations", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"revocations": a.Registry.List(time.Now())})
	}, a.Verifier.Middleware(a.Admins, "admin"))
}

func (a *API) post(c echo.Context) error {
	var req Request
	if err := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 64<<10)).Decode(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "body: "+err.Error())
	}
	if req.Kind != KindIdentity && req.Kind != KindSession && req.Kind != KindGrant {
		return echo.NewHTTPError(http.StatusBadRequest, "kind must be identity, session or grant")
	}
	if strings.TrimSpace(req.Value) == "" || len(req.Value) > 1024 {
		return echo.NewHTTPError(http.StatusBadRequest, "value is required (at most 1024 bytes)")
	}
	// The reason is what the client whose session ends is told, and what the trail keeps
	// for the auditor: a revocation (or its lifting) without one says nothing.
	if strings.TrimSpace(req.Reason) == "" || len(req.Reason) > 1024 {
		return echo.NewHTTPError(http.StatusBadRequest, "reason is required (at most 1024 bytes): why access is revoked, or lifted")
	}
	who := identity.FromContext(c).Identity
	rv := Revocation{Kind: req.Kind, Value: req.Value, Reason: req.Reason, By: who.Subject, ByName: who.Name, At: time.Now().UTC(), Lifted: req.Lift}
	if req.For != "" {
		d, err := time.ParseDuration(req.For)
		if err != nil || d <= 0 {
			return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("for: %q is not a positive duration", req.For))
		}
		rv.Until = rv.At.Add(d)
	}
	if err := Publish(c.Request().Context(), a.JS, rv, who); err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
	}
	return c.JSON(http.StatusOK, rv)
}

// Package revoke is the revocations API: an administrator revokes an identity, a session
// or a grant (or lifts a revocation), and it is published on stream GH_REVOKE (subjects
// gh.revoke.<kind>.<value>, the latest per target kept; the message is the contract's
// schemas.RevocationState, published and followed by services/bus). Every proxy's session
// registry (proxy/session) follows it from the start (so one that starts later knows it
// too), ends the matching live sessions and refuses new ones until the revocation lapses or
// is lifted.
package revoke

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/identity"
)

// The contract's names (schemas, messages.yaml), for this package's callers.
const (
	Stream  = schemas.StreamRevoke
	Subject = schemas.SubjectRevoke
)

// Kinds of revocation targets.
const (
	KindIdentity = schemas.RevokeKindIdentity
	KindSession  = schemas.RevokeKindSession
	KindGrant    = schemas.RevokeKindGrant
)

// BySystem is who revokes what Gatehouse ends by itself (an expired grant);
// ReasonGrantExpired is that revocation's reason.
const (
	BySystem           = schemas.RevokedBySystem
	ReasonGrantExpired = schemas.ReasonGrantExpired
)

// Revocation is the state of one target: the contract's message.
type Revocation = schemas.RevocationState

// Registry is a view of the revocations in force, followed from GH_REVOKE.
type Registry = bus.Revocations

// IdentityValues are the values an identity revocation may name to reach id
// (schemas.RevocationTargets).
func IdentityValues(id schemas.Identity) []string { return schemas.RevocationTargets(id) }

// EnsureStream creates GH_REVOKE.
func EnsureStream(ctx context.Context, js jetstream.JetStream) error {
	return bus.EnsureRevokeStream(ctx, js)
}

// Publish writes a revocation (or its lifting) and records it in the audit trail.
func Publish(ctx context.Context, js jetstream.JetStream, r Revocation, who schemas.Identity) error {
	return bus.PublishRevocation(ctx, js, r, who)
}

// Follow replays GH_REVOKE and keeps following it; onRevoke is called for every revocation
// that comes into force after the replay. It returns once the replay is done.
func Follow(ctx context.Context, js jetstream.JetStream, log *slog.Logger, onRevoke func(Revocation)) (*Registry, error) {
	return bus.FollowRevocations(ctx, js, log, onRevoke)
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

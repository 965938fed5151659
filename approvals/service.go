package approvals

import (
	"context"
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
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/approvals/grants"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// SubjectClaim is the request a proxy makes to use a fail-fast approval (the contract's).
const SubjectClaim = schemas.SubjectApprovalClaim

// Publish writes an approval event to GH_APPROVALS (bus.PublishApproval).
func Publish(ctx context.Context, js jetstream.JetStream, approvalID string, e *schemas.Event, msgID string) error {
	return bus.PublishApproval(ctx, js, approvalID, e, msgID)
}

// Service keeps the state of every approval (rebuilt from GH_APPROVALS at start), takes
// decisions through the API, expires what passes its deadline, and hands out fail-fast
// approvals.
type Service struct {
	JS       jetstream.JetStream
	NC       *nats.Conn
	Verifier *identity.Verifier
	Log      *slog.Logger
	// OnChange, when set, is called after an approval changed (the Slack notifier).
	OnChange func(*Approval)
	// Config has the grant roles; Grants stores approved grants; Admins may see every grant.
	Config *config.Config
	Grants *grants.Store
	Admins []string
	// Auditors may see every approval (as Admins may); others see their own requests and
	// those whose approver groups they are in.
	Auditors []string

	mu        sync.Mutex
	applied   uint64 // the last GH_APPROVALS sequence applied
	replaying bool
	approvals map[string]*Approval
	waiters   map[string][]chan struct{}
	ready     chan struct{}
	claimSub  *nats.Subscription
	decideSub *nats.Subscription
}

// Start rebuilds the state from GH_APPROVALS and keeps following it.
func (s *Service) Start(ctx context.Context) error {
	s.approvals = map[string]*Approval{}
	s.waiters = map[string][]chan struct{}{}
	s.ready = make(chan struct{})
	s.replaying = true
	cons, err := s.JS.OrderedConsumer(ctx, bus.StreamApprovals, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("follow %s: %w", bus.StreamApprovals, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	if info.NumPending == 0 {
		close(s.ready)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		s.apply(m.Data())
		md, err := m.Metadata()
		if err == nil {
			s.mu.Lock()
			s.applied = md.Sequence.Stream
			s.mu.Unlock()
		}
		if err == nil && md.NumPending == 0 {
			select {
			case <-s.ready:
			default:
				close(s.ready)
			}
		}
	})
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); cc.Stop() }()
	select {
	case <-s.ready:
		s.mu.Lock()
		s.replaying = false
		var due []Approval
		for _, a := range s.approvals {
			if s.grantDue(a) {
				due = append(due, *a)
			}
		}
		s.mu.Unlock()
		for i := range due {
			s.createGrant(ctx, &due[i]) // approved while no copy of this service ran
		}
	case <-time.After(30 * time.Second):
		return errors.New("approvals: GH_APPROVALS not replayed within 30s")
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.claimSub, err = s.NC.QueueSubscribe(SubjectClaim, "approvals", s.claim); err != nil {
		return err
	}
	s.decideSub, err = s.NC.QueueSubscribe(schemas.SubjectApprovalDecide, "approvals", s.decideRequest)
	return err
}

// decideRequest records a decision another component sends (the notifier, for a Slack
// click): the same checks as the API's, and the approval's state or why not in reply.
func (s *Service) decideRequest(m *nats.Msg) {
	var req schemas.ApprovalDecision
	var reply schemas.ApprovalDecisionReply
	if err := json.Unmarshal(m.Data, &req); err != nil {
		reply.Status, reply.Error = http.StatusBadRequest, "unreadable decision: "+err.Error()
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		a, err := s.Decide(ctx, req.ApprovalID, req.By, req.Decision, req.Via, req.Reason)
		cancel()
		var e *Error
		switch {
		case errors.As(err, &e):
			reply.Status, reply.Error = e.Status, e.Message
		case err != nil:
			reply.Status, reply.Error = http.StatusServiceUnavailable, err.Error()
		default:
			reply.Approval = &a
		}
	}
	b, _ := json.Marshal(&reply)
	if err := m.Respond(b); err != nil {
		s.Log.Warn("decision reply failed", "err", err)
	}
}

func (s *Service) apply(data []byte) {
	e, err := Decode(data)
	if err != nil {
		s.Log.Error("unreadable message on GH_APPROVALS; ignored", "err", err)
		return
	}
	var p struct {
		ApprovalID string `json:"approval_id"`
		GrantID    string `json:"grant_id"`
	}
	_ = json.Unmarshal(e.Payload, &p)
	id := p.ApprovalID
	if id == "" {
		id = p.GrantID
	}
	if id == "" {
		return
	}
	s.mu.Lock()
	a := s.approvals[id]
	if a == nil {
		a = &Approval{}
		s.approvals[id] = a
	}
	changed, err := a.Apply(e)
	var snapshot Approval
	grantDue := changed && !s.replaying && s.grantDue(a)
	if changed {
		snapshot = *a
		for _, w := range s.waiters[id] {
			close(w)
		}
		delete(s.waiters, id)
	}
	s.mu.Unlock()
	if err != nil {
		s.Log.Error("approval event not applied", "approval", id, "type", e.Type, "err", err)
	}
	if changed && s.OnChange != nil && snapshot.ID != "" {
		s.OnChange(&snapshot)
	}
	if grantDue {
		go s.createGrant(context.Background(), &snapshot)
	}
}

// grantDue says an approved grant request has no grant yet and would still be in force.
func (s *Service) grantDue(a *Approval) bool {
	return s.Grants != nil && a.Request.Kind == "grant" && a.Status == Approved && !a.Granted &&
		time.Now().Before(a.DecidedAt.Add(time.Duration(a.Request.GrantSeconds)*time.Second))
}

// createGrant stores an approved grant and records it (on GH_APPROVALS, so a restart does
// not create it again, and in the audit trail).
func (s *Service) createGrant(ctx context.Context, a *Approval) {
	onExpiry := "end_sessions"
	if s.Config != nil {
		if r, ok := s.Config.GrantRole(a.Request.GrantRole); ok {
			onExpiry = r.OnExpiry
		}
	}
	g := grants.Grant{ID: a.ID, Subject: a.Requester.Subject, Resource: a.Resource, Role: a.Request.GrantRole,
		Expires: a.DecidedAt.Add(time.Duration(a.Request.GrantSeconds) * time.Second).UTC(), ApprovedBy: a.ApprovedBy(),
		Reason: a.Request.Reason, OnExpiry: onExpiry}
	if _, err := s.Grants.Create(ctx, g); err != nil {
		s.Log.Error("approved grant not stored", "grant", g.ID, "err", err)
		return
	}
	p := &schemas.GrantCreated{GrantID: g.ID, Resource: g.Resource, Role: g.Role, Expires: g.Expires, ApprovedBy: g.ApprovedBy, Reason: g.Reason}
	e, err := Event(schemas.TypeGrantCreated, a.Requester, a.Resource, p, time.Now())
	if err == nil {
		err = Publish(ctx, s.JS, a.ID, e, a.ID+".grant")
	}
	if err == nil {
		err = recordConfigEvent(ctx, s.JS, e)
	}
	if err != nil {
		s.Log.Warn("grant creation not recorded", "grant", g.ID, "err", err)
	}
	s.Log.Info("grant created", "grant", g.ID, "subject", g.Subject, "role", g.Role, "resource", g.Resource, "expires", g.Expires)
}

// expireGrants removes grants past their expiry; those whose role says so are revoked, so
// that the sessions that used them end.
func (s *Service) expireGrants(ctx context.Context, now time.Time) {
	if s.Grants == nil {
		return
	}
	gs, err := s.Grants.List(ctx)
	if err != nil {
		return
	}
	for _, g := range gs {
		if now.Before(g.Expires) {
			continue
		}
		s.endGrant(ctx, g, nil)
	}
}

// endGrant removes a grant and records how it ended: revoked by rv, or (rv nil) expired,
// when a role with on_expiry end_sessions has it revoked so that its sessions end.
func (s *Service) endGrant(ctx context.Context, g grants.Grant, rv *schemas.RevocationState) {
	if err := s.Grants.Delete(ctx, g.ID); err != nil {
		s.Log.Warn("grant not removed", "grant", g.ID, "err", err)
		return
	}
	var typ string
	var p schemas.Payload
	if rv != nil {
		typ, p = schemas.TypeGrantRevoked, &schemas.GrantRevoked{GrantID: g.ID, Resource: g.Resource, Role: g.Role, Expires: g.Expires, By: rv.By, Reason: rv.Reason}
	} else {
		end := g.OnExpiry != "next_statement"
		if end {
			ex := schemas.RevocationState{Kind: schemas.RevokeKindGrant, Value: g.ID, Reason: schemas.ReasonGrantExpired, By: schemas.RevokedBySystem, At: now(), Until: g.Expires.Add(24 * time.Hour)}
			if err := bus.PublishRevocation(ctx, s.JS, ex, schemas.Identity{Subject: schemas.RevokedBySystem, Kind: "system"}); err != nil {
				s.Log.Warn("expired grant not revoked", "grant", g.ID, "err", err)
			}
		}
		typ, p = schemas.TypeGrantExpired, &schemas.GrantExpired{GrantID: g.ID, Resource: g.Resource, Role: g.Role, Expires: g.Expires, EndedSessions: end}
	}
	e, err := Event(typ, schemas.Identity{Subject: g.Subject}, g.Resource, p, time.Now())
	if err == nil {
		err = recordConfigEvent(ctx, s.JS, e)
	}
	if err != nil {
		s.Log.Warn("grant end not recorded", "grant", g.ID, "type", typ, "err", err)
	}
}

func now() time.Time { return time.Now().UTC() }

// RevokeGrant ends a grant that was revoked (gatehouse revoke --grant ID).
func (s *Service) RevokeGrant(rv schemas.RevocationState) {
	if rv.Kind != schemas.RevokeKindGrant || s.Grants == nil || rv.By == schemas.RevokedBySystem {
		return
	}
	gs, err := s.Grants.List(context.Background())
	if err != nil {
		return
	}
	for _, g := range gs {
		if g.ID == rv.Value {
			s.endGrant(context.Background(), g, &rv)
		}
	}
}

// recordConfigEvent puts a one-event record into GH_AUDIT (resource _config).
func recordConfigEvent(ctx context.Context, js jetstream.JetStream, e *schemas.Event) error {
	return bus.RecordControl(ctx, js, *e)
}

// Get returns a copy of an approval.
func (s *Service) Get(id string) (Approval, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.approvals[id]
	if !ok || a.ID == "" {
		return Approval{}, false
	}
	return a.Snapshot(), true
}

// waitChange returns a channel closed at the approval's next change.
func (s *Service) waitChange(id string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.waiters[id] = append(s.waiters[id], ch)
	return ch
}

// List returns approvals, newest first; only pending ones unless all.
func (s *Service) List(all bool) []Approval {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Approval
	for _, a := range s.approvals {
		if a.ID != "" && (all || a.Status == Pending) {
			out = append(out, *a)
		}
	}
	slices.SortFunc(out, func(a, b Approval) int { return b.Requested.Compare(a.Requested) })
	return out
}

// Decide records who's decision on an approval, checking that they may decide it. It
// returns the approval's state after the decision.
func (s *Service) Decide(ctx context.Context, id string, who schemas.Identity, decision, via, reason string) (Approval, error) {
	a, ok := s.Get(id)
	if !ok {
		s.catchUp(ctx) // requested a moment ago, elsewhere?
		if a, ok = s.Get(id); !ok {
			return a, &Error{http.StatusNotFound, "no approval " + id}
		}
	}
	if decision != "approve" && decision != "deny" {
		return a, &Error{http.StatusBadRequest, "decision must be approve or deny"}
	}
	if decision == "deny" && strings.TrimSpace(reason) == "" {
		return a, &Error{http.StatusBadRequest, "a denial needs a reason"}
	}
	s.mu.Lock()
	again := s.approvals[id].Counted(who.Subject, decision)
	s.mu.Unlock()
	if again {
		return a, nil // the same click again: counted once
	}
	if why := a.CanDecide(who); why != "" {
		return a, &Error{http.StatusForbidden, why}
	}
	outcome, n := Pending, uint32(len(a.Approvals))
	if decision == "deny" {
		outcome = Denied
	} else if n++; n >= max(a.Request.Required, 1) {
		outcome = Approved
	}
	e, err := Event(schemas.TypeApprovalDecided, who, a.Resource, &schemas.ApprovalDecided{ApprovalID: id, Decision: decision, By: who.Subject,
		Via: via, Reason: reason, Outcome: outcome, Approvals: n}, time.Now())
	if err != nil {
		return a, err
	}
	changed := s.waitChange(id)
	if err := Publish(ctx, s.JS, id, e, id+".decided."+who.Subject+"."+decision); err != nil {
		return a, err
	}
	select { // the state follows the stream: answer with it
	case <-changed:
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
	}
	a, _ = s.Get(id)
	return a, nil
}

// Run expires approvals whose deadline (or fail-fast window) passed, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if s.decideSub != nil {
				_ = s.decideSub.Drain()
			}
			if s.claimSub != nil {
				_ = s.claimSub.Drain()
			}
			return nil
		case now := <-t.C:
			s.expireGrants(ctx, now)
			for _, a := range s.List(true) {
				due := a.Status == Pending && now.After(a.Request.Deadline)
				window := time.Duration(a.Request.WindowSeconds) * time.Second
				due = due || (a.Status == Approved && a.Request.Mode == "fail_fast" && !a.Used && now.After(a.DecidedAt.Add(window)))
				if !due {
					continue
				}
				e, err := Event(schemas.TypeApprovalExpired, schemas.Identity{Subject: "gatehouse", Kind: "system"}, a.Resource,
					&schemas.ApprovalExpired{ApprovalID: a.ID, Deadline: a.Request.Deadline}, now)
				if err == nil {
					err = Publish(ctx, s.JS, a.ID, e, a.ID+".expired")
				}
				if err != nil {
					s.Log.Warn("approval expiry not recorded", "approval", a.ID, "err", err)
				}
			}
		}
	}
}

// ClaimRequest asks for a fail-fast approval of the identical statement.
type ClaimRequest = schemas.ApprovalClaim

// ClaimReply is the contract's answer to a claim.
type ClaimReply = schemas.ApprovalClaimReply

// catchUp waits until everything on GH_APPROVALS when it is called has been applied (a
// request published a moment ago, by a proxy, must be seen before a claim is answered).
func (s *Service) catchUp(ctx context.Context) {
	st, err := s.JS.Stream(ctx, bus.StreamApprovals)
	if err != nil {
		return
	}
	info, err := st.Info(ctx)
	if err != nil {
		return
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.mu.Lock()
		done := s.applied >= info.State.LastSeq
		s.mu.Unlock()
		if done {
			return
		}
	}
}

func (s *Service) claim(m *nats.Msg) {
	var req ClaimRequest
	var reply ClaimReply
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s.catchUp(ctx)
	if err := json.Unmarshal(m.Data, &req); err == nil {
		s.mu.Lock()
		var use *Approval
		for _, a := range s.approvals {
			if a.Requester.Subject != req.Subject || a.Resource != req.Resource || a.Request.StatementHash != req.StatementHash || a.Request.Mode != "fail_fast" {
				continue
			}
			switch {
			case a.Status == Approved && !a.Used:
				use = a
			case a.Status == Pending:
				reply.Pending = a.ID
			}
		}
		var id, resource string
		var by []string
		var requested, approved time.Time
		if use != nil {
			id, resource, by, requested, approved = use.ID, use.Resource, use.ApprovedBy(), use.Requested, use.DecidedAt
			use.Used = true // at once, so that a concurrent claim cannot take it too
		}
		s.mu.Unlock()
		if id != "" {
			used := &schemas.ApprovalUsed{ApprovalID: id, SessionID: req.SessionID, ApprovedBy: by,
				RequestedAt: requested.UTC().Format(time.RFC3339Nano), ApprovedAt: approved.UTC().Format(time.RFC3339Nano)}
			e, err := Event(schemas.TypeApprovalUsed, schemas.Identity{Subject: req.Subject}, resource, used, time.Now())
			if err == nil {
				err = Publish(context.Background(), s.JS, id, e, id+".used")
			}
			if err != nil {
				s.Log.Warn("fail-fast approval use not recorded; not used", "approval", id, "err", err)
			} else {
				reply.Used, reply.ApprovedBy, reply.RequestedAt, reply.ApprovedAt = id, by, used.RequestedAt, used.ApprovedAt
			}
		}
	}
	b, _ := json.Marshal(reply)
	_ = m.Respond(b)
}

// Error is an API error with its HTTP status.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// visibleTo reports whether who may see approval a (its statement text, requester and
// reason): its requester, members of its approver groups, auditors and admins.
func (s *Service) visibleTo(a *Approval, who *identity.Identity) bool {
	if who.HasAnyGroup(s.Admins) || who.HasAnyGroup(s.Auditors) || who.HasAnyGroup(a.Request.Approvers) {
		return true
	}
	return a.Requester.Subject == who.Subject && (a.Requester.Issuer == "" || a.Requester.Issuer == who.Issuer)
}

// Register adds the API: GET /api/v1/approvals[?all=1], GET /api/v1/approvals/:id,
// POST /api/v1/approvals/:id/approve|deny {"reason": "..."} (recorded with via console
// when made with a browser session, else api, or cli when the body says so). A caller sees the approvals
// it asked for and those it may decide (auditors and admins see all); an approval it may
// not see is answered 404, as one that does not exist. Deciding checks the approver
// groups of each request.
func (s *Service) Register(e *echo.Echo) {
	e.GET("/api/v1/approvals", func(c echo.Context) error {
		who := identity.FromContext(c)
		out := []Approval{}
		for _, a := range s.List(c.QueryParam("all") != "") {
			if s.visibleTo(&a, who) {
				out = append(out, a)
			}
		}
		return c.JSON(http.StatusOK, map[string]any{"approvals": out})
	}, s.Verifier.Middleware(nil, ""))
	e.GET("/api/v1/approvals/:id", func(c echo.Context) error {
		a, ok := s.Get(c.Param("id"))
		if !ok || !s.visibleTo(&a, identity.FromContext(c)) {
			return echo.NewHTTPError(http.StatusNotFound, "no approval "+c.Param("id"))
		}
		return c.JSON(http.StatusOK, a)
	}, s.Verifier.Middleware(nil, ""))
	e.POST("/api/v1/grants", func(c echo.Context) error {
		var req GrantRequest
		if err := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 64<<10)).Decode(&req); err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, "body: "+err.Error())
		}
		a, err := s.RequestGrant(c.Request().Context(), identity.FromContext(c).Identity, req)
		var ae *Error
		if errors.As(err, &ae) {
			return echo.NewHTTPError(ae.Status, ae.Message)
		}
		if err != nil {
			return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
		}
		return c.JSON(http.StatusOK, a)
	}, s.Verifier.Middleware(nil, ""))
	// GET /api/v1/grants/roles lists the roles that can be asked for (the config's grants:
	// role, resources, approver groups, approvals needed, the longest grant), so that a
	// person asking for one need not know the config.
	e.GET("/api/v1/grants/roles", func(c echo.Context) error {
		type role struct {
			Role               string   `json:"role"`
			Resources          []string `json:"resources"`
			Approvers          []string `json:"approvers"`
			Required           int      `json:"required"`
			MaxDurationSeconds int64    `json:"max_duration_seconds"`
		}
		out := []role{}
		if s.Config != nil {
			for _, g := range s.Config.Grants {
				out = append(out, role{Role: g.Role, Resources: g.Resources, Approvers: g.Approvers, Required: g.Required, MaxDurationSeconds: int64(g.MaxDuration.Seconds())})
			}
		}
		return c.JSON(http.StatusOK, map[string]any{"roles": out})
	}, s.Verifier.Middleware(nil, ""))
	// GET /api/v1/grants lists the grants in force the caller may see: an admin's, every
	// grant (scope "all"); anyone else's, their own (scope "own", subject the caller).
	e.GET("/api/v1/grants", func(c echo.Context) error {
		who := identity.FromContext(c)
		all := who.HasAnyGroup(s.Admins)
		scope := "own"
		if all {
			scope = "all"
		}
		out := []grants.Grant{}
		if s.Grants != nil {
			gs, err := s.Grants.List(c.Request().Context())
			if err != nil {
				return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
			}
			for _, g := range gs {
				if all || g.Subject == who.Subject {
					out = append(out, g)
				}
			}
		}
		return c.JSON(http.StatusOK, map[string]any{"grants": out, "scope": scope, "subject": who.Subject})
	}, s.Verifier.Middleware(nil, ""))
	for _, d := range []string{"approve", "deny"} {
		e.POST("/api/v1/approvals/:id/"+d, func(c echo.Context) error {
			var body struct {
				Reason string `json:"reason"`
				Via    string `json:"via"`
			}
			if c.Request().ContentLength != 0 {
				if err := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 64<<10)).Decode(&body); err != nil {
					return echo.NewHTTPError(http.StatusBadRequest, "body: "+err.Error())
				}
			}
			// The channel is the gateway's word, not the caller's: a browser session is the
			// console; a bearer token is the API, or the CLI when it says so.
			via := "api"
			switch {
			case identity.WebSessionFromContext(c) != nil:
				via = "console"
			case body.Via == "cli":
				via = "cli"
			}
			who := identity.FromContext(c).Identity
			a, err := s.Decide(c.Request().Context(), c.Param("id"), who, d, via, body.Reason)
			var ae *Error
			if errors.As(err, &ae) {
				return echo.NewHTTPError(ae.Status, ae.Message)
			}
			if err != nil {
				return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
			}
			return c.JSON(http.StatusOK, a)
		}, s.Verifier.Middleware(nil, ""))
	}
}

// GrantRequest is the body of POST /api/v1/grants.
type GrantRequest struct {
	Resource string `json:"resource"`
	Role     string `json:"role"`
	For      string `json:"for"`
	Reason   string `json:"reason"`
}

// RequestGrant asks for a role on a resource for a while: an approval of kind grant.
func (s *Service) RequestGrant(ctx context.Context, who schemas.Identity, req GrantRequest) (Approval, error) {
	if s.Config == nil || s.Grants == nil {
		return Approval{}, &Error{http.StatusNotImplemented, "grants are not configured"}
	}
	role, ok := s.Config.GrantRole(req.Role)
	if !ok {
		return Approval{}, &Error{http.StatusBadRequest, fmt.Sprintf("no grantable role %q", req.Role)}
	}
	if !slices.Contains(role.Resources, req.Resource) && !slices.Contains(role.Resources, "*") {
		return Approval{}, &Error{http.StatusBadRequest, fmt.Sprintf("role %s cannot be granted on resource %q", req.Role, req.Resource)}
	}
	d, err := time.ParseDuration(req.For)
	if err != nil || d <= 0 {
		return Approval{}, &Error{http.StatusBadRequest, fmt.Sprintf("for: %q is not a positive duration", req.For)}
	}
	if d > role.MaxDuration {
		return Approval{}, &Error{http.StatusBadRequest, fmt.Sprintf("for: %s is longer than role %s allows (%s)", d, req.Role, role.MaxDuration)}
	}
	if strings.TrimSpace(req.Reason) == "" {
		return Approval{}, &Error{http.StatusBadRequest, "a grant request needs a reason"}
	}
	id := NewID()
	now := time.Now()
	p := &schemas.ApprovalRequested{ApprovalID: id, Kind: "grant", Reason: req.Reason, Approvers: role.Approvers,
		Required: uint32(role.Required), Deadline: now.Add(role.Timeout).UTC(), Mode: "hold", GrantRole: req.Role, GrantSeconds: uint64(d / time.Second)}
	e, err := Event(schemas.TypeApprovalRequested, who, req.Resource, p, now)
	if err != nil {
		return Approval{}, err
	}
	changed := s.waitChange(id)
	if err := Publish(ctx, s.JS, id, e, ""); err != nil {
		return Approval{}, err
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
	}
	a, _ := s.Get(id)
	return a, nil
}

package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// maxTestBody bounds the body of POST /api/v1/policy/test (and so the statement).
const maxTestBody = 64 << 10

// TestAPI serves POST /api/v1/policy/test: what the decision service would answer now to a
// statement (or an SSH command) on a resource, by the policies, the resource and its
// catalog in force, for the caller or an identity it names. It changes nothing and records
// nothing: no proxy asked, nothing ran.
type TestAPI struct {
	// Service is the decision service whose engine, grants and catalogs are in force.
	Service *Service
	// Resource resolves a resource's name to its definition in force.
	Resource func(name string) (*config.Resource, bool)
	Verifier *identity.Verifier
	// Groups may test: the admin and auditor groups.
	Groups []string
}

// Register adds the route.
func (t *TestAPI) Register(e *echo.Echo) {
	e.POST("/api/v1/policy/test", t.test, t.Verifier.Middleware(t.Groups, "admin or auditor"))
}

// TestRequest is the body of POST /api/v1/policy/test: a resource and one of statement
// (PostgreSQL) or command (SSH, an exec), as whom (default: the caller).
type TestRequest struct {
	Resource  string `json:"resource"`
	Statement string `json:"statement,omitempty"`
	Command   string `json:"command,omitempty"`
	// Login is the account on an SSH host the command would run as (default: the
	// resource's first login, as the proxy's when the caller names none).
	Login    string        `json:"login,omitempty"`
	Identity *TestIdentity `json:"identity,omitempty"`
}

// TestIdentity is the identity a test is decided for.
type TestIdentity struct {
	Subject string   `json:"subject"`
	Name    string   `json:"name,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	// Kind is human (the default) or service.
	Kind string `json:"kind,omitempty"`
}

// TestResult is the decision reply, with what it was decided for.
type TestResult struct {
	schemas.DecisionReply
	// Identity is the identity decided for; CatalogVersion the version of the resource's
	// catalog the statement was resolved against (empty: none).
	Identity       schemas.Identity `json:"identity"`
	CatalogVersion string           `json:"catalog_version,omitempty"`
}

func (t *TestAPI) test(c echo.Context) error {
	var req TestRequest
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, maxTestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", maxTestBody))
		}
		return echo.NewHTTPError(http.StatusBadRequest, "body: "+err.Error())
	}
	r, ok := t.Resource(req.Resource)
	if req.Resource == "" || !ok {
		return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no resource %q", req.Resource))
	}
	who := identity.FromContext(c).Identity
	if p := req.Identity; p != nil {
		if p.Subject == "" {
			return echo.NewHTTPError(http.StatusBadRequest, "identity.subject is empty")
		}
		who = schemas.Identity{Subject: p.Subject, Name: p.Name, Groups: p.Groups, Kind: p.Kind}
		if who.Name == "" {
			who.Name = who.Subject // as the verifier names a token without name claims
		}
		switch who.Kind {
		case "":
			who.Kind = "human"
		case "human", "service", "agent":
		default:
			return echo.NewHTTPError(http.StatusBadRequest, "identity.kind is human, service or agent")
		}
	}
	in := &Input{DecisionRequest: schemas.DecisionRequest{Identity: who, Resource: schemas.Resource{Name: r.Name, Type: r.Type, Labels: r.Labels}}}
	switch {
	case r.Type == "postgres" && req.Statement != "" && req.Command == "":
		// A statement that does not parse is the tester's mistake, said with the parser's
		// words and where it stopped, not a decision.
		if info := Analyze(req.Statement, AnalyzeOptions{}); info.ParseError != "" && !info.tooComplex {
			return echo.NewHTTPError(http.StatusBadRequest, map[string]any{"message": "the statement does not parse: " + info.ParseError, "position": info.ParsePosition})
		}
		in.SQL = &schemas.SQLRequest{Text: req.Statement}
		if t.Service.Catalogs != nil {
			in.Catalog = t.Service.Catalogs.For(r.Name, "")
		}
	case r.Type == "ssh" && req.Command != "" && req.Statement == "":
		login := req.Login
		if r.SSH != nil && len(r.SSH.Logins) > 0 {
			if login == "" {
				login = r.SSH.Logins[0]
			} else if !slices.Contains(r.SSH.Logins, login) {
				return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("login %q is not one of resource %s's (%s)", login, r.Name, strings.Join(r.SSH.Logins, ", ")))
			}
		}
		if info := AnalyzeShell(req.Command); info.ParseError != "" && !info.tooComplex {
			return echo.NewHTTPError(http.StatusBadRequest, map[string]any{"message": "the command does not parse: " + info.ParseError})
		}
		in.SSH = &schemas.SSHRequest{Login: login, Channel: "session", Request: "exec", Command: req.Command}
	case r.Type == "postgres":
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("resource %s is a PostgreSQL resource: give a statement", r.Name))
	case r.Type == "ssh":
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("resource %s is an SSH resource: give a command", r.Name))
	default:
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("resource %s is of type %s: only PostgreSQL statements and SSH commands are tested here", r.Name, r.Type))
	}
	now := time.Now()
	if t.Service.Grants != nil {
		in.Grants = t.Service.Grants(who.Subject, r.Name, now)
	}
	res := TestResult{DecisionReply: t.Service.Engine().Decide(in, now), Identity: who}
	if in.Catalog != nil {
		res.CatalogVersion = in.Catalog.Version()
	}
	return c.JSON(http.StatusOK, res)
}

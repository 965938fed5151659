package desired

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// maxDocument bounds an applied document, maxDocumentItems its policies and resources.
const (
	maxDocument      = 4 << 20
	maxDocumentItems = 1000
)

// API serves the desired state: GET and PUT /api/v1/policies and /api/v1/resources (YAML
// documents `policies: [...]` and `resources: [...]`): admins read and change them, auditors
// read them.
type API struct {
	Store    *Store
	JS       jetstream.JetStream
	Verifier *identity.Verifier
	Admins   []string
	// Auditors may read policies and resources (not change them).
	Auditors []string
	// Base is the running config: everything but policies and resources, which come from KV.
	Base *config.Config
	// Compile checks that policies compile and returns the revision they would be in force
	// as: the policy component's, handed over by the wiring (the store does not decide what
	// compiles). Without it, policies are not changed (fail closed).
	Compile func([]config.Policy) (revision uint64, err error)
}

// Register adds the routes.
func (a *API) Register(e *echo.Echo) {
	// Auditors read them too (the console's Resources and policies page), secrets redacted.
	readers := append(append([]string{}, a.Admins...), a.Auditors...)
	e.GET("/api/v1/policies", a.getPolicies, a.Verifier.Middleware(readers, "admin or auditor"))
	e.PUT("/api/v1/policies", a.putPolicies, a.Verifier.Middleware(a.Admins, "admin"))
	e.GET("/api/v1/resources", a.getResources, a.Verifier.Middleware(readers, "admin or auditor"))
	e.PUT("/api/v1/resources", a.putResources, a.Verifier.Middleware(a.Admins, "admin"))
}

// Document is what apply takes and get returns.
type Document struct {
	Policies  []config.Policy   `yaml:"policies,omitempty"`
	Resources []config.Resource `yaml:"resources,omitempty"`
}

// ApplyResult says what an apply changed.
type ApplyResult struct {
	Changed  []ChangeSummary `json:"changed"`
	Revision uint64          `json:"revision,omitempty"` // policies: the revision now in force
}

// ChangeSummary is one changed policy or resource.
type ChangeSummary struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Action string `json:"action"`
}

func (a *API) getPolicies(c echo.Context) error {
	ps, err := a.Store.Policies(c.Request().Context())
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "read policies: "+err.Error())
	}
	return yamlResponse(c, Document{Policies: ps})
}

func (a *API) getResources(c echo.Context) error {
	rs, err := a.Store.Resources(c.Request().Context())
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "read resources: "+err.Error())
	}
	b, err := yaml.Marshal(Document{Resources: rs})
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/yaml", []byte(redact(string(b))))
}

func yamlResponse(c echo.Context, d Document) error {
	b, err := yaml.Marshal(d)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/yaml", b)
}

// readDocument decodes the request body strictly, as the config file is decoded.
func readDocument(c echo.Context) (*Document, error) {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxDocument+1))
	if err != nil {
		return nil, echo.NewHTTPError(http.StatusBadRequest, "read body: "+err.Error())
	}
	if len(body) > maxDocument {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("document larger than %d bytes", maxDocument))
	}
	cfg, err := config.Parse(body)
	if err != nil {
		return nil, echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	// Each one applied is a KV write, an audit event and (policies) a compile: bounded.
	if n := len(cfg.Policies) + len(cfg.Resources); n > maxDocumentItems {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("the document has %d policies and resources; at most %d are applied at once", n, maxDocumentItems))
	}
	return &Document{Policies: cfg.Policies, Resources: cfg.Resources}, nil
}

func (a *API) putPolicies(c echo.Context) error {
	ctx := c.Request().Context()
	doc, err := readDocument(c)
	if err != nil {
		return err
	}
	if len(doc.Policies) == 0 {
		return echo.NewHTTPError(http.StatusBadRequest, "the document has no policies")
	}
	resources, err := a.Store.Resources(ctx)
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "read resources: "+err.Error())
	}
	current, err := a.Store.Policies(ctx)
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "read policies: "+err.Error())
	}
	// The document on its own (error paths are the document's), then the whole set that
	// would be in force: a policy that does not compile is refused whole, and the running
	// policies stay in force.
	check := *a.Base
	check.Resources, check.Policies, check.Tests, check.Grants = resources, doc.Policies, nil, nil
	if err := check.Validate(); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "policies refused: "+err.Error())
	}
	if a.Compile == nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "policies cannot be checked here (no policy compiler); nothing changed")
	}
	if _, err := a.Compile(doc.Policies); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "policies do not compile, nothing changed:\n"+err.Error())
	}
	merged := mergeByName(current, doc.Policies, func(p config.Policy) string { return p.Name })
	rev, err := a.Compile(merged)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "the resulting policy set does not compile, nothing changed:\n"+err.Error())
	}
	changes, err := a.Store.PutPolicies(ctx, doc.Policies)
	return a.finish(c, changes, rev, err)
}

func (a *API) putResources(c echo.Context) error {
	ctx := c.Request().Context()
	doc, err := readDocument(c)
	if err != nil {
		return err
	}
	if len(doc.Resources) == 0 {
		return echo.NewHTTPError(http.StatusBadRequest, "the document has no resources")
	}
	check := *a.Base
	check.Resources, check.Policies, check.Tests, check.Grants = doc.Resources, nil, nil, nil
	if err := check.Validate(); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "resources refused: "+err.Error())
	}
	changes, err := a.Store.PutResources(ctx, doc.Resources)
	return a.finish(c, changes, 0, err)
}

// finish records every change that was made (also when a later write failed) and answers.
func (a *API) finish(c echo.Context, changes []Change, rev uint64, writeErr error) error {
	who := identity.FromContext(c).Identity
	res := ApplyResult{Changed: []ChangeSummary{}, Revision: rev}
	var recordErr error
	for _, ch := range changes {
		if err := Record(c.Request().Context(), a.JS, ch, who, "api", rev); err != nil {
			recordErr = errors.Join(recordErr, err)
		}
		res.Changed = append(res.Changed, ChangeSummary{Kind: ch.Kind, Name: ch.Name, Action: ch.Action})
	}
	if err := errors.Join(writeErr, recordErr); err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, fmt.Sprintf("applied %d change(s), then: %v", len(changes), err))
	}
	return c.JSON(http.StatusOK, res)
}

func mergeByName[T any](current, changed []T, name func(T) string) []T {
	out := make([]T, 0, len(current)+len(changed))
	replaced := map[string]bool{}
	for _, c := range changed {
		replaced[name(c)] = true
	}
	for _, c := range current {
		if !replaced[name(c)] {
			out = append(out, c)
		}
	}
	return append(out, changed...)
}

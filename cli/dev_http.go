package cli

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/demoapi"
)

// The HTTP demo of `gatehouse dev`: a small customers and refunds API on a loopback port
// is the resource demo-api behind the HTTP proxy (https://127.0.0.1:8443/demo-api/...),
// with the gateway holding its credential; services of the orders-readers group may read
// customers (card numbers masked by field, emails by detector), refunds over 100 wait for
// an approval, and deleting customers is denied.

const demoAPIName = "demo-api"

var demoAPIPolicy = config.Policy{Name: "demo-api", Resources: []string{demoAPIName}, Rules: []config.Rule{
	{Name: "read-customers", Effect: "allow", When: `"orders-readers" in identity.groups && request.http.method == "GET" && request.http.path.startsWith("/customers")`},
	{Name: "mask-customers", Effect: "mask", When: `request.http.path.startsWith("/customers")`,
		Mask: &config.Mask{Fields: []string{"$.customers[*].card_number", "$.card_number"}, Detectors: []string{"email"}}},
	{Name: "refunds", Effect: "allow", When: `"orders-readers" in identity.groups && request.http.method == "POST" && request.http.path == "/refunds"`},
	{Name: "big-refunds", Effect: "require_approval", Reason: "refunds over 100 need a second person",
		When:     `request.http.method == "POST" && request.http.path == "/refunds" && (request.http.body_unread || request.http.body.amount > 100.0)`,
		Approval: &config.Approval{Approvers: []string{"approvers"}}},
	{Name: "no-deletes", Effect: "deny", Reason: "customers are deleted through the privacy workflow", When: `request.http.method == "DELETE"`},
}}

// startDemoAPI starts the demo HTTP service and adds it to cfg, unless cfg has one already.
func startDemoAPI(cfg *config.Config) (*demoapi.Server, error) {
	if _, ok := cfg.Resource(demoAPIName); ok {
		return nil, nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(b)
	s, err := demoapi.Start(token)
	if err != nil {
		return nil, fmt.Errorf("demo HTTP service: %w", err)
	}
	cfg.Resources = append(cfg.Resources, config.Resource{Name: demoAPIName, Type: "http", Labels: map[string]string{"env": "dev"},
		Audit: cfg.Audit.Mode, HTTP: &config.HTTPBackend{URL: s.URL, PathPrefix: "/" + demoAPIName, Bearer: token}})
	cfg.Policies = append(cfg.Policies, demoAPIPolicy)
	return s, nil
}

package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
)

// errTestsFailed makes `policy test -f` exit non-zero.
type errTestsFailed struct{ failed, total int }

func (e errTestsFailed) Error() string {
	return fmt.Sprintf("%d of %d policy test cases failed", e.failed, e.total)
}

func policyCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "apply" || args[0] == "get") {
		return desiredCmd("policy", args, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "test" {
		return usageError{"policy needs a subcommand: test, apply -f FILE, or get"}
	}
	fs := newFlags("policy test", stdout)
	cfgPath := fs.String("config", "", "config with the policies and resources (default: the running gateway's, with an admin token; else deploy/gatehouse.dev.yaml when it is here)")
	file := fs.String("f", "", "run the test cases (tests:) of this config file; exit 1 if one fails")
	as := fs.String("as", "", "subject of the caller")
	asName := fs.String("as-name", "", "the caller's name, identity.name (default: the subject)")
	groups := fs.String("groups", "", "comma-separated groups of the caller")
	kind := fs.String("kind", "service", "the caller's identity.kind: human, service or agent")
	onBehalfOf := fs.String("on-behalf-of", "", "identity.on_behalf_of: the person an agent or service acts for")
	agentTool := fs.String("agent-tool", "", "request.agent.tool: decide the statement as a tool call of the MCP server (query or describe_resource)")
	agentClient := fs.String("agent-client", "", "request.agent.client.name: the MCP client's name (with --agent-tool)")
	agentClientVersion := fs.String("agent-client-version", "", "request.agent.client.version (with --agent-tool)")
	resource := fs.String("resource", "", "resource name")
	grantRoles := fs.String("grants", "", "comma-separated roles the caller holds grants for")
	catalogFile := fs.String("catalog", "", "the resource's catalog `FILE` (JSON, as 'gatehouse catalog get' prints it); default: the config's test_catalogs, or the running gateway's")
	asJSON := fs.Bool("json", false, "print the decision as JSON")
	api := addAPIFlags(fs, "admin", "")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	path := *cfgPath
	if *file != "" {
		path = *file
	}
	var cfg *config.Config
	var cats map[string]*policy.Catalog
	if path == "" {
		// Neither file given: the policies in force at the running gateway, or the demo's
		// when run from a checkout without a token.
		if cfg, cats, path, err = livePolicies(api, *resource); err != nil {
			return err
		}
		if cfg == nil {
			path = "deploy/gatehouse.dev.yaml"
			if _, err := os.Stat(path); err != nil {
				return usageError{"policy test needs policies: pass --config FILE (a config with policies: and resources:), " +
					"or an admin token (--token or GATEHOUSE_TOKEN) to test against the policies in force at " + apiURL() + " (set GATEHOUSE_URL or --url for another gateway)"}
			}
		}
		fmt.Fprintf(stderr, "policy test: policies from %s\n", path)
	}
	if cfg == nil {
		if cfg, err = config.Load(path); err != nil {
			return err
		}
		if cats, err = loadTestCatalogs(path, cfg.TestCatalogs); err != nil {
			return err
		}
	}
	// Addresses do not matter offline; everything else must be valid.
	if err := validateOffline(cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	eng, err := policy.Compile(cfg.Policies, policy.RevisionOf(cfg.Policies))
	if err != nil {
		return fmt.Errorf("%s: policies do not compile:\n%w", path, err)
	}
	if *catalogFile != "" {
		c, err := loadCatalog(*catalogFile)
		if err != nil {
			return err
		}
		cats[*resource] = c
	}
	decide := func(tc config.PolicyTest) (schemas.DecisionReply, error) {
		r, ok := cfg.Resource(tc.Resource)
		if !ok {
			return schemas.DecisionReply{}, fmt.Errorf("unknown resource %q", tc.Resource)
		}
		res := tc.Resource
		cat := cats[res]
		if cat == nil && r.Type == "postgres" {
			return schemas.DecisionReply{}, fmt.Errorf("no catalog for resource %q: statements are resolved against the database's catalog; give one with --catalog FILE or test_catalogs: {%s: FILE} in %s (gatehouse catalog get --resource %s prints it)", res, res, path, res)
		}
		var gs []policy.Grant
		for _, role := range tc.Grants {
			gs = append(gs, policy.Grant{ID: "test-grant-" + role, Role: role, Resource: res, Expires: time.Now().Add(time.Hour)})
		}
		name := tc.AsName
		if name == "" {
			name = tc.As // as the verifier names a token without name claims
		}
		kind := tc.Kind
		if kind == "" {
			kind = "service"
		}
		req := schemas.DecisionRequest{Identity: schemas.Identity{Subject: tc.As, Name: name, Groups: tc.Groups, Kind: kind, OnBehalfOf: tc.OnBehalfOf},
			Resource: schemas.Resource{Name: r.Name, Type: r.Type, Labels: r.Labels}, SQL: &schemas.SQLRequest{Text: tc.SQL}}
		if a := tc.Agent; a != nil {
			req.Agent = &schemas.AgentRequest{Tool: a.Tool, ClientName: a.Client, ClientVersion: a.ClientVersion}
		}
		return eng.Decide(&policy.Input{DecisionRequest: req, Grants: gs, Catalog: cat}, time.Now()), nil
	}
	if *file != "" {
		if len(cfg.Tests) == 0 {
			return fmt.Errorf("%s has no tests:", path)
		}
		failed := 0
		for _, tc := range cfg.Tests {
			d, err := decide(tc)
			if err != nil {
				return fmt.Errorf("test %q: %w", tc.Name, err)
			}
			ok := d.Effect == tc.Expect && (tc.Rule == "" || tc.Rule == d.Rule)
			status := "PASS"
			if !ok {
				status = "FAIL"
				failed++
			}
			fmt.Fprintf(stdout, "%s  %s: %s\n", status, tc.Name, describe(d))
			if !ok {
				fmt.Fprintf(stdout, "      want %s%s\n", tc.Expect, ruleSuffix(tc.Rule))
			}
		}
		fmt.Fprintf(stdout, "%d of %d policy test cases passed\n", len(cfg.Tests)-failed, len(cfg.Tests))
		if failed > 0 {
			return errTestsFailed{failed, len(cfg.Tests)}
		}
		return nil
	}
	if *as == "" || *resource == "" || len(pos) != 1 {
		return usageError{`policy test needs --as, --resource and one SQL statement (or -f FILE)`}
	}
	var gs []string
	for _, g := range strings.Split(*groups, ",") {
		if g = strings.TrimSpace(g); g != "" {
			gs = append(gs, g)
		}
	}
	var roles []string
	for _, r := range strings.Split(*grantRoles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			roles = append(roles, r)
		}
	}
	tc := config.PolicyTest{As: *as, AsName: *asName, Kind: *kind, OnBehalfOf: *onBehalfOf, Groups: gs, Grants: roles, Resource: *resource, SQL: pos[0]}
	if !slices.Contains(config.IdentityKinds, *kind) {
		return usageError{fmt.Sprintf("--kind %q: want one of %s", *kind, strings.Join(config.IdentityKinds, ", "))}
	}
	switch {
	case *agentTool != "":
		if !slices.Contains(config.AgentTools, *agentTool) {
			return usageError{fmt.Sprintf("--agent-tool %q: want one of %s (the MCP tools whose statements are decided)", *agentTool, strings.Join(config.AgentTools, ", "))}
		}
		tc.Agent = &config.PolicyTestAgent{Tool: *agentTool, Client: *agentClient, ClientVersion: *agentClientVersion}
	case *agentClient != "" || *agentClientVersion != "":
		return usageError{"--agent-client and --agent-client-version need --agent-tool (request.agent is set for tool calls only)"}
	}
	d, err := decide(tc)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(d)
	}
	fmt.Fprintln(stdout, describe(d))
	fmt.Fprintf(stdout, "  kinds: %s\n  tables: %s\n  fingerprint: %s\n  policy revision: %d\n",
		strings.Join(d.Kinds, ", "), strings.Join(d.Tables, ", "), d.Fingerprint, d.Revision)
	return nil
}

// livePolicies reads the policies and resources in force, and the catalog of resource,
// from the running gateway; nil without a token.
func livePolicies(api *apiAccess, resource string) (*config.Config, map[string]*policy.Catalog, string, error) {
	if *api.token == "" && os.Getenv("GATEHOUSE_TOKEN") == "" {
		return nil, nil, "", nil
	}
	c, err := api.client(time.Minute)
	if err != nil {
		return nil, nil, "", err
	}
	cfg := &config.Config{}
	for _, p := range []string{"/api/v1/policies", "/api/v1/resources"} {
		resp, err := c.do(http.MethodGet, p, nil, "")
		if err != nil {
			return nil, nil, "", fmt.Errorf("policies in force at %s: %w (an admin token reads them; or pass --config FILE to test a file)", c.base, err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil {
			return nil, nil, "", err
		}
		part, err := config.Parse(b)
		if err != nil {
			return nil, nil, "", fmt.Errorf("%s%s: %w", c.base, p, err)
		}
		cfg.Policies = append(cfg.Policies, part.Policies...)
		cfg.Resources = append(cfg.Resources, part.Resources...)
	}
	cfg.ApplyDefaults()
	cats := map[string]*policy.Catalog{}
	if r, ok := cfg.Resource(resource); ok && r.Type == "postgres" {
		var sc schemas.Catalog
		if err := c.get("/api/v1/catalogs/"+url.PathEscape(resource), &sc); err != nil {
			return nil, nil, "", fmt.Errorf("catalog of %s: %w", resource, err)
		}
		if cats[resource], err = policy.NewCatalog(&sc); err != nil {
			return nil, nil, "", fmt.Errorf("catalog of %s: %w", resource, err)
		}
	}
	return cfg, cats, "the gateway at " + c.base, nil
}

func describe(d schemas.DecisionReply) string {
	s := fmt.Sprintf("%s by %s: %s", strings.ToUpper(d.Effect), ruleName(d.Policy, d.Rule), d.Reason)
	if sh := d.Shadow; sh != nil {
		s += fmt.Sprintf(" (shadow policies would %s by %s: %s)", strings.ToUpper(sh.Effect), ruleName(sh.Policy, sh.Rule), sh.Reason)
	}
	return s
}

func ruleName(policy, rule string) string {
	if rule == "" {
		return "default deny"
	}
	return policy + "/" + rule
}

func ruleSuffix(rule string) string {
	if rule == "" {
		return ""
	}
	return " by rule " + rule
}

// validateOffline validates cfg with placeholder addresses where they are unset, since a
// policy test touches no server.
func validateOffline(cfg *config.Config) error {
	c := *cfg
	c.Resources = append([]config.Resource(nil), cfg.Resources...)
	for i := range c.Resources {
		if pg := c.Resources[i].Postgres; pg != nil && pg.Address == "" {
			cp := *pg
			cp.Address = "127.0.0.1:5432"
			c.Resources[i].Postgres = &cp
		}
	}
	return c.Validate()
}

// loadTestCatalogs reads the catalogs a config's policy tests name, relative to it.
func loadTestCatalogs(cfgPath string, files map[string]string) (map[string]*policy.Catalog, error) {
	out := map[string]*policy.Catalog{}
	for res, f := range files {
		if !filepath.IsAbs(f) {
			f = filepath.Join(filepath.Dir(cfgPath), f)
		}
		c, err := loadCatalog(f)
		if err != nil {
			return nil, fmt.Errorf("test_catalogs.%s: %w", res, err)
		}
		out[res] = c
	}
	return out, nil
}

func loadCatalog(path string) (*policy.Catalog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c schemas.Catalog
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: not a catalog: %w", path, err)
	}
	return policy.NewCatalog(&c)
}

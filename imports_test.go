package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The import rules of docs/architecture.md, held over `go list`: which layer a package is
// in, and which layers it may import. A rule broken today is listed in knownViolations
// with what will remove it; a new one fails with the offending import, and a listed one
// that no longer exists fails too, so that the list only shrinks.

const module = "github.com/gatehouse/gatehouse/"

// layer is a package's place in the design: what it is, and, for components, which one.
type layer struct {
	kind string // wiring, proxy, shared (proxy/session and its parts), component, runtime, schemas
	name string // the component, or the proxy
}

func layerOf(pkg string) layer {
	p := strings.TrimPrefix(pkg, module)
	first, rest, _ := strings.Cut(p, "/")
	switch {
	case pkg == strings.TrimSuffix(module, "/"), first == "cli", first == "bench", first == "app", first == "integration":
		return layer{kind: "wiring"} // integration: the end-to-end tests, which start everything
	case first == "schemas":
		return layer{kind: "schemas"}
	case first == "proxy" && (rest == "session" || strings.HasPrefix(rest, "session/") || rest == "mask"):
		return layer{kind: "shared"}
	case first == "proxy":
		name, _, _ := strings.Cut(rest, "/")
		return layer{kind: "proxy", name: name}
	case first == "ingest", first == "query", first == "approvals", first == "notifier", first == "policy", first == "sinks", first == "revoke", first == "sshca":
		return layer{kind: "component", name: first} // approvals/grants is part of approvals
	case first == "services":
		return layer{kind: "runtime"}
	}
	return layer{kind: "unknown"}
}

// profileOf is the protocol a proxy is a profile of.
var profileOf = map[string]string{"kube": "http"}

// allowed says whether a package of layer from may import one of layer to.
func allowed(from, to layer) bool {
	switch from.kind {
	case "wiring":
		return true
	case "schemas":
		return to.kind == "schemas" // schemas imports nothing else of the project
	case "runtime":
		return to.kind == "runtime" || to.kind == "schemas"
	case "shared":
		return to.kind == "shared" || to.kind == "runtime" || to.kind == "schemas"
	case "proxy":
		// Wire only: its session, the runtime, the contracts; never a component or
		// another proxy — but for a profile of a protocol: the Kubernetes API is HTTP, and
		// its proxy the HTTP proxy with a profile (proxy/kube imports proxy/http).
		return to.kind == "shared" || to.kind == "runtime" || to.kind == "schemas" || (to.kind == "proxy" && to.name == from.name) ||
			(to.kind == "proxy" && profileOf[from.name] == to.name)
	case "component":
		// Components meet only through schemas/ over NATS.
		return to.kind == "runtime" || to.kind == "schemas" || (to.kind == "component" && to.name == from.name)
	}
	return false
}

// knownViolations are the rules broken today, each with what removes it (issue 15: the
// contracts move into schemas/, the workflow into proxy/session, approvals and the
// notifier meet over NATS).
var knownViolations = map[string]string{}

type listed struct {
	ImportPath string
	Imports    []string
}

func TestImportRules(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", "./...", "./schemas/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	seen := map[string]bool{}
	var broken []string
	packages := 0
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		packages++
		from := layerOf(p.ImportPath)
		if from.kind == "unknown" {
			t.Errorf("%s is in no layer of docs/architecture.md: place it", p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) && imp != strings.TrimSuffix(module, "/") {
				continue
			}
			to := layerOf(imp)
			if allowed(from, to) {
				continue
			}
			edge := strings.TrimPrefix(p.ImportPath, module) + " -> " + strings.TrimPrefix(imp, module)
			seen[edge] = true
			if _, ok := knownViolations[edge]; !ok {
				broken = append(broken, fmt.Sprintf("%s (a %s imports a %s)", edge, from.kind, to.kind))
			}
		}
	}
	if packages < 20 {
		t.Fatalf("go list found %d packages: the test is not looking at the module", packages)
	}
	slices.Sort(broken)
	for _, b := range broken {
		t.Errorf("import rule broken: %s", b)
	}
	for edge, fix := range knownViolations {
		if !seen[edge] {
			t.Errorf("%s no longer exists (%s): remove it from knownViolations", edge, fix)
		}
	}
}

// The rules themselves: a proxy importing a component or another proxy, a component
// importing another, schemas importing anything, and the runtime importing a component
// are refused.
func TestImportRulesRefuse(t *testing.T) {
	for _, c := range []struct{ from, to string }{
		{"proxy/postgres", "policy"}, {"proxy/postgres", "proxy/ssh"}, {"proxy/ssh", "ingest"},
		{"proxy/session", "query"}, {"query", "ingest"}, {"notifier", "approvals"},
		{"schemas", "services/bus"}, {"schemas/internal/x", "proxy/session"}, {"services/bus", "policy"}, {"ingest", "app"},
		{"proxy/postgres", "cli"},
	} {
		if allowed(layerOf(module+c.from), layerOf(module+c.to)) {
			t.Errorf("%s -> %s is allowed", c.from, c.to)
		}
	}
	for _, c := range []struct{ from, to string }{
		{"proxy/postgres", "proxy/session"}, {"proxy/postgres", "services/bus"}, {"proxy/postgres", "schemas"},
		{"approvals", "approvals/grants"}, {"app", "proxy/postgres"}, {"ingest", "services/seal"},
		{"proxy/postgres/internal/x", "proxy/postgres"},
	} {
		if !allowed(layerOf(module+c.from), layerOf(module+c.to)) {
			t.Errorf("%s -> %s is refused", c.from, c.to)
		}
	}
}

# Gatehouse — the two commands a new user runs: `make dev` and `make test`.
GO      ?= go
BIN     := bin/gatehouse
PKGS    := ./... ./schemas/...

.PHONY: dev test build deps test-deps generate bench bench-http fuzz-policy kube-fixture helm-fixture inspector-fixture console-assets clean

## dev: install what running needs when missing, build, and run Gatehouse locally with a demo
dev: deps build
	$(BIN) dev

## test: the whole test suite (unit, integration with real PostgreSQL, ClickHouse, NATS)
test: test-deps
	@# Kubernetes' binaries first, outside go test's timeout (a cold build takes 10-20 minutes);
	@# on failure the localkube tests say why (and skip when there is no module proxy).
	-@$(MAKE) --no-print-directory kube-fixture
	-@$(MAKE) --no-print-directory helm-fixture
	-@$(MAKE) --no-print-directory inspector-fixture
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 20m $(PKGS)
	$(GO) test -race -count=1 -timeout 10m ./proxy/...

## build: bin/gatehouse
build:
	$(GO) build -o $(BIN) .

## deps: install the missing system packages that building and running need (apt-get, as root or with sudo)
deps:
	@deploy/install-deps.sh

## test-deps: deps plus what only the tests use (pgbench, Node.js, psycopg, rsyslog, sqlsmith)
test-deps:
	@deploy/install-deps.sh test

## bench: pgbench -S against PostgreSQL directly, PgBouncer and Gatehouse, side by side
bench: build
	@deploy/install-deps.sh bench
	$(BIN) bench postgres --floor

## bench-http: wrk against a Go HTTP service directly, through nginx and through Gatehouse, side by side
## (ROUNDS=n rounds, targets alternating; medians)
ROUNDS ?= 5
bench-http: build
	@deploy/install-deps.sh bench
	$(BIN) bench http --rounds $(ROUNDS)

## fuzz-policy: the canary leak fuzzer for longer (SEED=n DURATION=10m): masked identities try to get
## planted values out through generated statements; prints what it tried and every leak
SEED     ?= $(shell date +%s)
DURATION ?= 10m
fuzz-policy: test-deps
	GATEHOUSE_FUZZ_SEED=$(SEED) GATEHOUSE_FUZZ_DURATION=$(DURATION) $(GO) test -count=1 -timeout 0 -v -run TestCanaryLeakFuzzer ./integration/

## chaos: the fault-injection suite in full (docs/chaos.md): every component killed in turn, ClickHouse down for a
## minute, the proxy cut off from NATS past audit.offline_limit, dead and slow SIEM sinks, disk full on the spool, then a
## soak of SOAK_SESSIONS sessions for SOAK; the report (table, soak.csv, soak.svg) goes to CHAOS_REPORT (default: a temp
## dir, printed). A bounded version runs in make test.
SOAK          ?= 10m
SOAK_SESSIONS ?= 1000
CHAOS_REPORT  ?=
chaos: test-deps
	GATEHOUSE_CHAOS=full GATEHOUSE_CHAOS_SOAK=$(SOAK) GATEHOUSE_CHAOS_SOAK_SESSIONS=$(SOAK_SESSIONS) GATEHOUSE_CHAOS_REPORT=$(CHAOS_REPORT) \
		$(GO) test -count=1 -timeout 0 -v -run 'TestChaos$$' ./integration/

## generate: regenerate the contract code and docs from schemas/events.yaml and schemas/messages.yaml
generate:
	cd schemas && $(GO) generate ./...

## kube-fixture: build once (or find in the cache) the Kubernetes test cluster's binaries: kube-apiserver,
## etcd and a fake kubelet, from the Go module proxy, into GATEHOUSE_CACHE/kube (default ~/.cache/gatehouse/kube)
kube-fixture:
	$(GO) run ./services/dev/localkube/cmd/build

## helm-fixture: build once (or find in the cache) the Helm command the chart's test renders and lints
## deploy/helm/gatehouse with, from the Go module proxy, into GATEHOUSE_CACHE/helm (default ~/.cache/gatehouse/helm)
helm-fixture:
	$(GO) run ./services/dev/localhelm/cmd/build

## inspector-fixture: install once (or find in the cache) the MCP Inspector that TestMCPInspector runs in its
## command-line mode, from npm, into GATEHOUSE_CACHE/inspector (default ~/.cache/gatehouse/inspector)
INSPECTOR_DIR = $${GATEHOUSE_CACHE:-$$HOME/.cache/gatehouse}/inspector
inspector-fixture:
	@test -x $(INSPECTOR_DIR)/node_modules/.bin/mcp-inspector || \
		npm install --prefix $(INSPECTOR_DIR) --no-audit --no-fund @modelcontextprotocol/inspector@0.17.2

## console-assets: the web console's vendored packages (query/console/ui/package-lock.json): npm ci, then copy
## the terminal player (JS bundle, CSS, licence) into query/console/web/vendor and axe-core into query/console/testdata;
## the copies are committed, so building and testing need no npm
CONSOLE_UI := query/console/ui
console-assets:
	cd $(CONSOLE_UI) && npm ci --ignore-scripts --no-audit --no-fund
	mkdir -p query/console/web/vendor query/console/testdata
	cp $(CONSOLE_UI)/node_modules/asciinema-player/dist/bundle/asciinema-player.min.js \
		$(CONSOLE_UI)/node_modules/asciinema-player/dist/bundle/asciinema-player.css query/console/web/vendor/
	cp $(CONSOLE_UI)/node_modules/asciinema-player/LICENSE query/console/web/vendor/asciinema-player.LICENSE.txt
	cp $(CONSOLE_UI)/node_modules/axe-core/axe.min.js query/console/testdata/axe.min.js

clean:
	rm -rf bin .gatehouse

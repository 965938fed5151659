package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// command is one command of the CLI, for its help: path is the words that name it
// ("sessions list"), args what follows them, summary one line on what it does, and
// examples whole command lines that work against `gatehouse dev`.
type command struct {
	path     string
	args     string
	summary  string
	examples []string
}

// commands is every command, in the order the top-level help lists them. Main's dispatch,
// each command's flags and this table are checked against each other by the tests
// (every entry's --help exits 0 and shows its flags and an example).
var commands = []command{
	{"dev", "[--config FILE]", "run everything locally with a demo: embedded NATS, local ClickHouse and PostgreSQL, a development OIDC issuer",
		[]string{"gatehouse dev", "gatehouse dev --config my-gatehouse.yaml"}},
	{"run", "--config FILE [--target T[,T...]]", "run some or all components of a deployment (--list-targets lists them)",
		[]string{"gatehouse run --config /etc/gatehouse/gatehouse.yaml --target proxy", "gatehouse run --list-targets"}},
	{"login", "[--server URL] [--device] [--no-browser]",
		"sign in at the gateway's issuer (a browser on this machine with PKCE, or the device flow) and keep the tokens in your config directory (mode 0600), renewed with the refresh token; prints who signed in, never the token",
		[]string{"gatehouse login", "gatehouse login --server https://gatehouse.example.com --device"}},
	{"logout", "[--server URL]", "forget the sign-in of gatehouse login (delete its token file)",
		[]string{"gatehouse logout"}},
	{"connect", "RESOURCE [--server URL] [--print] [--user ACCOUNT] [-- CLIENT ARGS]",
		"reach a resource through the gateway with your sign-in: psql for postgres (the token in PGPASSWORD), kubectl for kubernetes (a kubeconfig under your config directory), ssh with the certificate of gatehouse ssh login; --print prints the command instead",
		[]string{"gatehouse connect demo -- -c 'select 1'", "gatehouse connect demo --print", "gatehouse connect dev-k8s -- get pods", "gatehouse connect demo-host --user root -- uptime"}},
	{"token", "--dev --sub SUBJECT [--groups g1,g2] [--ttl 1h] | --cached", "mint a token from the development issuer of a running `gatehouse dev` (production tokens come from your IdP), or print the token of gatehouse login (--cached)",
		[]string{"gatehouse token --dev --sub svc-orders --groups orders-readers", "export GATEHOUSE_TOKEN=$(gatehouse token --dev --sub auditor --groups auditors)",
			"export PGPASSWORD=$(gatehouse token --cached)"}},
	{"mcp", "[--url URL] [--token TOKEN] [--path /mcp]",
		"the gateway's MCP server for an AI agent that speaks MCP over stdio (Claude Desktop, an IDE): relays each JSON-RPC message to the gateway's streamable HTTP endpoint with your token ($GATEHOUSE_TOKEN, else gatehouse login's, renewed when due) and the answers back, one message a line; configure the agent to run it as its MCP server's command (in Claude Desktop: command gatehouse, args [mcp]); every tool call is decided, masked, held for approval and recorded by the gateway",
		[]string{"gatehouse mcp", "gatehouse mcp --url https://gatehouse.example.com", `gatehouse mcp --token "$AGENT_TOKEN" --path /mcp`}},
	{"ssh login", "[--gateway URL] [--token TOKEN] [--dir DIR] [--no-browser]",
		"sign in (device flow, or a browser on this machine) and get a short-lived SSH certificate from the gateway's CA, valid until the token expires; prints the ~/.ssh/config lines for plain ssh",
		[]string{"gatehouse ssh login", "gatehouse ssh login --gateway https://gatehouse.example.com --dir ~/.gatehouse/ssh-prod",
			`gatehouse ssh login --token "$CI_OIDC_TOKEN" --dir /tmp/ci-ssh > /dev/null`}},
	{"kubeconfig", "--resource NAME [--out FILE] [--url URL] [--no-browser]",
		"write a kubeconfig for a kubernetes resource: its cluster is the gateway's HTTP proxy (with the proxy's certificate as the CA), its user runs `gatehouse kube credential` for the token; signs in first when there is no token",
		[]string{"gatehouse kubeconfig --resource dev-k8s --out ~/.kube/gatehouse-dev", "gatehouse kubeconfig --resource prod-k8s --url https://gatehouse.example.com > prod.kubeconfig"}},
	{"kube credential", "--resource NAME [--url URL] [--no-browser]",
		"kubectl's exec credential plugin: print an ExecCredential with your token ($GATEHOUSE_TOKEN, else a cached one with more than a minute left, else a new sign-in, cached); run it once in a terminal to sign in",
		[]string{"gatehouse kube credential --resource dev-k8s", "gatehouse kube credential --resource prod-k8s --url https://gatehouse.example.com --no-browser"}},
	{"sessions list", "[filters] [--json]", "list recorded sessions, newest first, with their protocol and statement (SSH: request) counts (auditor token)",
		[]string{"gatehouse sessions list", "gatehouse sessions list --identity svc-orders --effect deny --since 2026-01-02T00:00:00Z",
			"gatehouse sessions list --protocol ssh --text systemctl", "gatehouse sessions list --protocol kubernetes --text /exec"}},
	{"sessions replay", "ID [--json] [--speed N | --no-wait | --no-play] [--asciicast FILE [--channel N] [--input]]",
		"print a session's statements, decisions, approvals and masked results in order; for SSH, its requests, exits and files, then play its terminal; for HTTP and Kubernetes, each request, its decision, response and masked bodies, then play each kubectl exec (auditor token)",
		[]string{"gatehouse sessions replay 01939c2e-5e0b-7a31-8f3c-2f1d1c0a9b77",
			"gatehouse sessions replay 01939c2e-5e0b-7a31-8f3c-2f1d1c0a9b77 --speed 4 --max-idle 2s",
			"gatehouse sessions replay 01939c2e-5e0b-7a31-8f3c-2f1d1c0a9b77 --asciicast session.cast --channel 0"}},
	{"evidence access", "[--since T] [--until T] [--format csv|json]", "who accessed which resource, how often, with every outcome counted as itself (auditor token)",
		[]string{"gatehouse evidence access --since 2026-01-01T00:00:00Z --until 2026-04-01T00:00:00Z"}},
	{"evidence privileged", "[--label K=V] [--since T] [--until T] [--format csv|json]", "writes and schema changes on resources with a label, with their approvals (auditor token)",
		[]string{"gatehouse evidence privileged --label env=production", "gatehouse evidence privileged --label env=dev --format json"}},
	{"evidence denials", "[--since T] [--until T] [--format csv|json]", "statements denied or held for approval, with the rule and reason (auditor token)",
		[]string{"gatehouse evidence denials --format json"}},
	{"evidence grants", "[--since T] [--until T] [--format csv|json]", "time-boxed grants created, revoked and expired (auditor token)",
		[]string{"gatehouse evidence grants --since 2026-01-01T00:00:00Z"}},
	{"evidence changes", "[--since T] [--until T] [--format csv|json]", "changes to policies and resources: who, what, when, with the diff (auditor token)",
		[]string{"gatehouse evidence changes"}},
	{"evidence agents", "[--since T] [--until T] [--format csv|json]", "what AI agents did through the MCP server: per agent, the person it acted for, resource and tool, its calls counted by outcome and the rows returned (auditor token)",
		[]string{"gatehouse evidence agents --since 2026-01-01T00:00:00Z --format json"}},
	{"audit verify", "[--session ID | --since T] [--json]", "re-read the audit store (by default the sessions with events in the last 24 hours; it prints the range it covered) and report missing, reordered, altered or shadowed events (a later row under a stored event's id), incomplete statements, cut and unsealed sessions (exit 1 if any); a sweeper's end its gateway overtook is listed as superseded",
		[]string{"gatehouse audit verify", "gatehouse audit verify --since 2026-01-01T00:00:00Z --json"}},
	{"audit retention", "[--dry-run] [--json]", "drop the months of the trail past their retention now (audit.retention; admin token), or list what would go",
		[]string{"gatehouse audit retention --dry-run"}},
	{"policy test", `--as SUB [--groups g1,g2] [--kind K] [--agent-tool T] --resource NAME "SQL" | -f FILE`,
		"decide a statement offline and say which rule decided and why; or run a config file's test cases (exit 1 on a failure)",
		[]string{`gatehouse policy test --as svc-orders --groups orders-readers --resource demo "select * from customers"`, "gatehouse policy test -f deploy/gatehouse.dev.yaml",
			`gatehouse policy test --as bot --kind agent --on-behalf-of alice@example.com --agent-tool query --agent-client claude-code --resource demo "select id from orders"`}},
	{"policy apply", "-f FILE", "change the policies in force, live, with a recorded diff (admin token)",
		[]string{"gatehouse policy apply -f policies.yaml"}},
	{"policy get", "", "print the policies in force as YAML (admin token)",
		[]string{"gatehouse policy get > policies.yaml"}},
	{"resource apply", "-f FILE", "add or change resources, live (admin token)",
		[]string{"gatehouse resource apply -f resources.yaml"}},
	{"resource get", "", "print the resources as YAML, passwords redacted (admin token)",
		[]string{"gatehouse resource get"}},
	{"catalog get", "--resource NAME", "print the catalog a resource's statements are resolved against (JSON, for policy tests' test_catalogs)",
		[]string{"gatehouse catalog get --resource demo > deploy/demo.catalog.json"}},
	{"nats config", "--keys DIR [--targets T[,T...]] [--out FILE]",
		"print the authorization block of a nats-server config: one nkey user per component with least-privilege permissions (publish, subscribe, JetStream API) and a provision user; the seeds go to DIR/TARGET.nk (made when missing, mode 0600), each component's nats.nkey_file",
		[]string{"gatehouse nats config --keys /etc/gatehouse/nats-keys --out /etc/nats/gatehouse-users.conf", "gatehouse nats config --keys ./keys --targets proxy-postgres,policy,provision"}},
	{"nats provision", "--config FILE [--timeout 2m]",
		"create or update every stream and KV bucket with nats.replicas, using the config's NATS credentials (the provision user's); components then run with nats.streams: bind",
		[]string{"gatehouse nats provision --config /etc/gatehouse/provision.yaml"}},
	{"approvals list", "[--all] [--json]", "approvals waiting for a decision (--all: decided ones too)",
		[]string{"gatehouse approvals list", "gatehouse approvals list --all --json"}},
	{"approvals approve", "ID [--reason R]", "approve a held statement or grant (approver token; not your own)",
		[]string{`gatehouse approvals approve 01939c2e-5e0b-7a31-8f3c-2f1d1c0a9b77 --reason "INC-42, checked the WHERE clause"`}},
	{"approvals deny", "ID --reason R", "deny a held statement or grant (approver token)",
		[]string{`gatehouse approvals deny 01939c2e-5e0b-7a31-8f3c-2f1d1c0a9b77 --reason "no ticket"`}},
	{"grants request", "--resource R --role ROLE --for 2h --reason WHY", "ask for elevated access for a while (an approver must approve it)",
		[]string{`gatehouse grants request --resource demo --role dba-write --for 2h --reason "INC-42"`}},
	{"grants list", "[--json]", "grants in force: yours, or everyone's with an admin token",
		[]string{"gatehouse grants list"}},
	{"revoke", "(--identity NAME|SUB | --session ID | --grant ID) --reason R [--for 1h] [--lift]", "end live sessions now and refuse new ones (admin token)",
		[]string{`gatehouse revoke --identity svc-orders --reason "credential leak, INC-42" --for 1h`, "gatehouse revoke --identity svc-orders --lift --reason \"rotated\""}},
	{"revocations", "[--json]", "list the revocations in force",
		[]string{"gatehouse revocations"}},
	{"bench postgres", "[flags]", "pgbench -S against PostgreSQL directly, through PgBouncer and through Gatehouse, in one run",
		[]string{"gatehouse bench postgres --floor --duration 20s --clients 8"}},
	{"bench http", "[flags]", "HTTP requests (wrk) to a Go service directly, through nginx and through Gatehouse (allowed, and masked), targets alternating over rounds, in one run",
		[]string{"gatehouse bench http --rounds 5 --duration 10s --connections 1,64"}},
	{"bench ingest", "[flags]", "events per second from JetStream into ClickHouse",
		[]string{"gatehouse bench ingest --events 1000000"}},
	{"bench audit", "[flags]", "evidence reports over 10M events and the replay of a 100k-event session",
		[]string{"gatehouse bench audit --events 1000000 --runs 3"}},
}

func lookupCommand(path string) (command, bool) {
	for _, c := range commands {
		if c.path == path {
			return c, true
		}
	}
	return command{}, false
}

// groups are the first words of commands that have subcommands.
func isGroup(word string) bool {
	for _, c := range commands {
		if strings.HasPrefix(c.path, word+" ") {
			return true
		}
	}
	return false
}

func isHelpArg(s string) bool {
	return s == "-h" || s == "-help" || s == "--help" || s == "help"
}

// usage is the top-level help.
func usage() string {
	var b strings.Builder
	b.WriteString("gatehouse — identity-aware access gateway for PostgreSQL (and more to come)\n\nUsage:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  gatehouse %s\t%s\n", c.path, c.summary)
	}
	tw.Flush()
	b.WriteString(`
Run 'gatehouse COMMAND --help' (or 'gatehouse help COMMAND') for a command's flags and examples.
Environment: GATEHOUSE_URL (API base, default http://127.0.0.1:8080), GATEHOUSE_TOKEN (the
token API commands send; --token overrides it).
`)
	return b.String()
}

// groupHelp lists a group's subcommands.
func groupHelp(group string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: gatehouse %s SUBCOMMAND [flags]\n\nSubcommands:\n", group)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		if strings.HasPrefix(c.path, group+" ") {
			fmt.Fprintf(tw, "  %s %s\t%s\n", strings.TrimPrefix(c.path, group+" "), c.args, c.summary)
		}
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nRun 'gatehouse %s SUBCOMMAND --help' for its flags and examples.\n", group)
	return b.String()
}

// helpFor prints a command's help: what it does, its synopsis, every flag with a one-line
// explanation, and examples.
func helpFor(w io.Writer, fs *flag.FlagSet) {
	c, _ := lookupCommand(fs.Name())
	fmt.Fprintf(w, "Usage: gatehouse %s %s\n", fs.Name(), c.args)
	if c.summary != "" {
		fmt.Fprintf(w, "\n%s.\n", strings.ToUpper(c.summary[:1])+c.summary[1:])
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if len(names) > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		slices.Sort(names)
		for _, n := range names {
			f := fs.Lookup(n)
			typ, text := flag.UnquoteUsage(f)
			dash := "--"
			if len(n) == 1 {
				dash = "-"
			}
			arg := dash + n
			if typ != "" {
				arg += " " + placeholder(n, typ)
			}
			if def := f.DefValue; def != "" && def != "false" && def != "0" && def != "0s" && f.Name != "token" {
				text += " (default " + def + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\n", arg, text)
		}
		tw.Flush()
	}
	if len(c.examples) > 0 {
		fmt.Fprint(w, "\nExamples:\n")
		for _, e := range c.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

// placeholder names a flag's value in help: the word its usage quotes with backquotes,
// else a name for what common flags take.
func placeholder(name, typ string) string {
	if typ != "string" && typ != "value" {
		return strings.ToUpper(typ)
	}
	switch name {
	case "since", "until":
		return "TIME"
	case "for":
		return "DURATION"
	case "gateway", "server":
		return "URL"
	case "f", "config", "cpuprofile", "memprofile", "trace":
		return "FILE"
	case "ssh-dir":
		return "DIR"
	case "user":
		return "ACCOUNT"
	case "groups", "grants", "modes", "clients", "target":
		return "A,B"
	}
	return strings.ToUpper(name)
}

// newFlags is a command's flag set: --help prints the command's help on stdout (exit 0),
// a bad flag a short error on stderr (exit 2). Parse it with parseFlags.
func newFlags(name string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors reach stderr once, through Main
	fs.Usage = func() { helpFor(stdout, fs) }
	return fs
}

// parseFlags parses flags that may come before or after positional arguments
// (`gatehouse sessions replay ID --json`), which the flag package alone stops at, and
// returns the positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	help := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = help }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				help()
				return nil, err
			}
			return nil, usageError{fmt.Sprintf("%s (see 'gatehouse %s --help')", strings.TrimSpace(firstLine(err.Error())), fs.Name())}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parseNoArgs is parseFlags for a command that takes no positional arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parseFlags(fs, args)
	if err == nil && len(pos) > 0 {
		err = usageError{fmt.Sprintf("%s takes no arguments (got %q; see 'gatehouse %s --help')", fs.Name(), pos, fs.Name())}
	}
	return err
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Package cli is the gatehouse command line: run, dev, token, sessions.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gatehouse/gatehouse/services/app"
	"github.com/gatehouse/gatehouse/services/config"
)

const usage = `gatehouse — identity-aware access gateway for PostgreSQL (and more to come)

Usage:
  gatehouse dev [flags]                 run everything locally with a demo (embedded NATS,
                                        local ClickHouse and PostgreSQL, dev OIDC issuer)
  gatehouse run --config FILE --target=T[,T...]
                                        run components; --list-targets lists them
  gatehouse token --dev --sub S [--groups a,b] [--ttl 1h]
                                        mint a development token from a running 'gatehouse dev'
  gatehouse sessions list [--json]      list recorded sessions (auditor token)
  gatehouse sessions replay ID [--json] print a session's statements, decisions and results
  gatehouse evidence access|denials|grants|changes [--since T] [--until T] [--format csv|json]
                                        evidence reports for audits (auditor token)
  gatehouse audit verify [--session ID | --since T]
                                        re-read the audit store and report missing, reordered or
                                        altered events and unsealed sessions (exit 1 if any)
  gatehouse audit retention [--dry-run] drop the months of the trail past their retention now
                                        (audit.retention; admin token), or list what would go
  gatehouse policy test --as SUB [--groups g] --resource R "SQL"
                                        decide a statement offline and say which rule and why
  gatehouse policy test -f FILE         run a config file's policy test cases (exit 1 on failure)
  gatehouse policy apply -f FILE        change policies in force, live (admin token)
  gatehouse policy get                  print the policies in force (admin token)
  gatehouse catalog get --resource R    print the catalog a resource's statements are resolved
                                        against (JSON; for policy tests' test_catalogs)
  gatehouse approvals list [--all]      approvals waiting (or all)
  gatehouse approvals approve ID [--reason R] | deny ID --reason R
                                        decide an approval (approver token)
  gatehouse grants request --resource R --role ROLE --for 2h --reason WHY
                                        ask for elevated access for a while (needs an approval)
  gatehouse grants list                 grants in force (yours; all with an admin token)
  gatehouse revoke --identity SUB | --session ID | --grant ID [--reason R] [--for 1h] [--lift]
                                        end live sessions now and refuse new ones (admin token)
  gatehouse revocations                 list the revocations in force
  gatehouse resource apply -f FILE      add or change resources, live (admin token)
  gatehouse resource get                print the resources (passwords redacted)
  gatehouse bench postgres [flags]      pgbench -S: direct vs PgBouncer vs Gatehouse, one run
  gatehouse bench ingest [flags]        events per second from JetStream into ClickHouse
  gatehouse bench audit [flags]         evidence reports over 10M events, replay of a 100k session

Run 'gatehouse COMMAND --help' for a command's flags.
Environment: GATEHOUSE_URL (API base, default http://127.0.0.1:8080), GATEHOUSE_TOKEN.
`

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = runCmd(args[1:], stdout, stderr)
	case "dev":
		err = devCmd(args[1:], stdout, stderr)
	case "token":
		err = tokenCmd(args[1:], stdout, stderr)
	case "sessions":
		err = sessionsCmd(args[1:], stdout, stderr)
	case "bench":
		err = benchCmd(args[1:], stdout, stderr)
	case "evidence":
		err = evidenceCmd(args[1:], stdout, stderr)
	case "audit":
		err = auditCmd(args[1:], stdout, stderr)
	case "grants":
		err = grantsCmd(args[1:], stdout, stderr)
	case "revoke":
		err = revokeCmd(args[1:], stdout, stderr)
	case "revocations":
		err = revocationsCmd(args[1:], stdout, stderr)
	case "approvals":
		err = approvalsCmd(args[1:], stdout, stderr)
	case "resource":
		err = resourceCmd(args[1:], stdout, stderr)
	case "policy":
		err = policyCmd(args[1:], stdout, stderr)
	case "catalog":
		err = catalogCmd(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "gatehouse: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	var tf errTestsFailed
	if errors.As(err, &tf) {
		return 1
	}
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "gatehouse:", err)
		return 2
	}
	fmt.Fprintln(stderr, "gatehouse:", err)
	return 1
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gatehouse %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseInterspersed parses flags that may come before or after positional arguments
// (`gatehouse sessions replay ID --json`), which the flag package alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// NewLogger builds the process logger from the config.
func NewLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func runCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "run --config FILE --target=all|T[,T...]", stderr)
	cfgPath := fs.String("config", "", "config file (YAML)")
	targets := fs.String("target", "all", "comma-separated targets to run")
	list := fs.Bool("list-targets", false, "list the targets and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list {
		for _, t := range app.Targets() {
			fmt.Fprintln(stdout, t)
		}
		return nil
	}
	if *cfgPath == "" {
		return usageError{"run needs --config FILE"}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: %w", *cfgPath, err)
	}
	ctx, cancel := signalContext()
	defer cancel()
	return app.New(cfg, NewLogger(cfg.Log, stderr)).Run(ctx, strings.Split(*targets, ","))
}

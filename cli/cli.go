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

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/services/config"
)

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	// `gatehouse help X Y` is `gatehouse X Y --help`.
	if args[0] == "help" && len(args) > 1 {
		args = append(args[1:len(args):len(args)], "--help")
	}
	if isGroup(args[0]) {
		switch {
		case len(args) > 1 && isHelpArg(args[1]):
			fmt.Fprint(stdout, groupHelp(args[0]))
			return 0
		case len(args) == 1 || strings.HasPrefix(args[1], "-"):
			fmt.Fprintf(stderr, "gatehouse: %s needs a subcommand\n\n%s", args[0], groupHelp(args[0]))
			return 2
		}
		if _, ok := lookupCommand(args[0] + " " + args[1]); !ok {
			fmt.Fprintf(stderr, "gatehouse: %s has no subcommand %q\n\n%s", args[0], args[1], groupHelp(args[0]))
			return 2
		}
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
	case "login":
		err = loginCmd(args[1:], stdout, stderr)
	case "logout":
		err = logoutCmd(args[1:], stdout, stderr)
	case "connect":
		err = connectCmd(args[1:], stdout, stderr)
	case "ssh":
		err = sshCmd(args[1:], stdout, stderr)
	case "kubeconfig":
		err = kubeconfigCmd(args[1:], stdout, stderr)
	case "kube":
		err = kubeCmd(args[1:], stdout, stderr)
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
	case "nats":
		err = natsCmd(args[1:], stdout, stderr)
	case "mcp":
		err = mcpCmd(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage())
		return 0
	default:
		fmt.Fprintf(stderr, "gatehouse: unknown command %q\n\n%s", args[0], usage())
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
	fs := newFlags("run", stdout)
	cfgPath := fs.String("config", "", "config file (YAML)")
	targets := fs.String("target", "all", "comma-separated targets to run")
	list := fs.Bool("list-targets", false, "list the targets and exit")
	if err := parseNoArgs(fs, args); err != nil {
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

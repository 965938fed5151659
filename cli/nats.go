package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
)

// natsCmd is `gatehouse nats config` and `gatehouse nats provision`.
func natsCmd(args []string, stdout, stderr io.Writer) error {
	switch args[0] {
	case "config":
		return natsConfigCmd(args[1:], stdout)
	case "provision":
		return natsProvisionCmd(args[1:], stdout, stderr)
	}
	return usageError{"nats needs a subcommand: config or provision"}
}

// natsConfigCmd prints the authorization block of a nats-server configuration: one nkey
// user per component with its least-privilege permissions (bus.PermissionsFor), and the
// provisioning user; the seeds are kept in --keys (created when missing, mode 0600).
func natsConfigCmd(args []string, stdout io.Writer) error {
	fs := newFlags("nats config", stdout)
	keys := fs.String("keys", "", "directory of the users' nkey seeds, TARGET.nk (created when missing, mode 0600); give each component its own as nats.nkey_file")
	targets := fs.String("targets", strings.Join(bus.PermissionTargets(), ","), "comma-separated users to write: targets, and provision (the user of gatehouse nats provision)")
	out := fs.String("out", "", "write the configuration to this file (mode 0644) instead of standard output; include it from nats-server's config")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *keys == "" {
		return usageError{"nats config needs --keys DIR: where the components' nkey seeds are (or are to be made)"}
	}
	var users []bus.ServerUser
	for _, t := range strings.Split(*targets, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains(bus.PermissionTargets(), t) {
			return usageError{fmt.Sprintf("nats config: %q is not one of %s", t, strings.Join(bus.PermissionTargets(), ", "))}
		}
		pub, err := bus.UserSeed(filepath.Join(*keys, t+".nk"))
		if err != nil {
			return err
		}
		users = append(users, bus.ServerUser{Target: t, NKey: pub})
	}
	conf, err := bus.ServerAuthorization(users)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = io.WriteString(stdout, conf)
		return err
	}
	return os.WriteFile(*out, []byte(conf), 0o644)
}

// natsProvisionCmd creates or updates every stream and KV bucket with the config's
// replicas, with the config's NATS credentials (the provisioning user's).
func natsProvisionCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("nats provision", stdout)
	cfgPath := fs.String("config", "", "config file (YAML): its nats section says where, with which credentials (the provision user's) and how many replicas")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usageError{"nats provision needs --config FILE"}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	// The provisioning step creates; the components' setting (bind) is theirs.
	cfg.NATS.Streams = config.StreamsCreate
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: %w", *cfgPath, err)
	}
	ctx, cancel := signalContext()
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()
	made, err := app.Provision(ctx, app.New(cfg, NewLogger(cfg.Log, stderr)))
	if err != nil {
		return err
	}
	slices.Sort(made)
	fmt.Fprintf(stdout, "provisioned with %d replica(s): %s\n", cfg.NATS.Replicas, strings.Join(made, ", "))
	return nil
}

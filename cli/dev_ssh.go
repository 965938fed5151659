package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localssh"
)

// The SSH demo of `gatehouse dev`: when it runs as root with OpenSSH's server installed, an
// sshd of its own on a free loopback port (data under the data dir) is the resource
// demo-host, logging in as root on this machine, with policies that let the ops group run
// a few read-only programs and open a shell only once someone approves it.

// demoHostName is the demo SSH resource.
const demoHostName = "demo-host"

// demoHostPolicy is what the demo lets people do on demo-host.
var demoHostPolicy = config.Policy{Name: "demo-host", Resources: []string{demoHostName}, Rules: []config.Rule{
	{Name: "ops-read-only-tools", Effect: "allow", Reason: "ops may look around the host",
		When: `"ops" in identity.groups && request.ssh.request == "exec" && !request.ssh.dynamic && request.ssh.files_written.size() == 0 && ` +
			`request.ssh.programs.all(p, p in ["uptime", "df", "free", "ls", "cat", "ps", "whoami", "hostname", "uname", "id", "echo", "date", "head", "tail", "grep", "wc"])`},
	{Name: "ops-terminal", Effect: "allow", When: `"ops" in identity.groups && request.ssh.request in ["pty-req", "env"]`},
	{Name: "ops-shell-needs-approval", Effect: "require_approval", Reason: "an interactive root shell needs a second person",
		When:     `"ops" in identity.groups && request.ssh.request == "shell"`,
		Approval: &config.Approval{Approvers: []string{"approvers"}}},
	{Name: "ops-sftp-read", Effect: "allow", When: `"ops" in identity.groups && request.ssh.request in ["subsystem", "sftp"] && ` +
		`(request.ssh.request == "subsystem" || request.ssh.sftp.op in ["read", "list", "stat", "realpath", "readlink"])`},
	{Name: "mask-cards", Effect: "mask", When: "true", Mask: &config.Mask{Detectors: []string{"card"}}},
}}

// startDemoHost starts the demo SSH host and adds it to cfg, unless cfg has one already;
// without root or sshd it says why there is no SSH demo and goes on (nil).
func startDemoHost(ctx context.Context, cfg *config.Config, stderr io.Writer) (*localssh.SSHD, error) {
	if _, ok := cfg.Resource(demoHostName); ok {
		return nil, nil
	}
	fmt.Fprintln(stderr, "starting the demo SSH host ...")
	s, err := localssh.Start(ctx, filepath.Join(cfg.DataDir, "demo-sshd"))
	if errors.Is(err, localssh.ErrNotRoot) || errors.Is(err, localssh.ErrNotInstalled) {
		fmt.Fprintf(stderr, "no SSH demo host: %v (the SSH proxy runs; add a resource of type ssh, docs/ssh.md)\n", err)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("demo SSH host: %w", err)
	}
	cfg.Resources = append(cfg.Resources, config.Resource{Name: demoHostName, Type: "ssh", Labels: map[string]string{"env": "dev"},
		Audit: cfg.Audit.Mode, SSH: &config.SSHBackend{Address: s.Addr(), Logins: []string{"root"}, KeyFile: s.ClientKeyFile, HostKey: s.HostKeyLine()}})
	cfg.Policies = append(cfg.Policies, demoHostPolicy)
	return s, nil
}

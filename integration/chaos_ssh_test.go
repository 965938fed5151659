package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// The chaos load's SSH side: two clients (chaos-host buffered, chaos-host-strict strict)
// run numbered commands through proxy-ssh on a real sshd, over one SSH connection each (a
// gateway session) until it breaks. Each command appends its marker to a file on the host
// (`echo chaos_<k>_<i>_ | tee -a FILE`), so the checks know which commands the host ran,
// whatever the trail says. Every command needs a decision. proxy-ssh connects to NATS as
// the other components do.

// chaosSSHResources are the SSH resources, for the config: %[1]s the sshd's address, %[2]s
// the gateway's key for it, %[3]s its host key.
const chaosSSHResources = `  - name: chaos-host
    type: ssh
    labels: {env: dev, team: orders}
    audit: buffered
    ssh: {address: %[1]q, logins: [root], key_file: %[2]q, host_key: %[3]q}
  - name: chaos-host-strict
    type: ssh
    labels: {env: dev, team: orders}
    audit: strict
    ssh: {address: %[1]q, logins: [root], key_file: %[2]q, host_key: %[3]q}
`

// chaosSSHPolicy lets the load's identity run echo and tee on both.
const chaosSSHPolicy = `  - name: chaos-host
    resources: [chaos-host, chaos-host-strict]
    rules:
      - name: orders-readers-echo
        effect: allow
        when: '"orders-readers" in identity.groups && request.ssh.request == "exec" && !request.ssh.dynamic && request.ssh.programs.all(p, p in ["echo", "tee"])'
        reason: orders-readers may echo on the chaos host
`

// chaosSSHCommand is client k's command i.
func chaosSSHCommand(log string, k, i int) string {
	return fmt.Sprintf("echo chaos_%d_%d_ | tee -a %s", k, i, log)
}

// runSSH is an SSH client of the load.
func (lc *loadClient) runSSH(ctx context.Context, c *chaosCluster) {
	var client *gossh.Client
	defer func() {
		if client != nil {
			client.Close() // the session ends with its connection
		}
	}()
	for i := 0; ctx.Err() == nil; i++ {
		if client == nil {
			var err error
			if client, err = c.dialSSH(lc.db); err != nil {
				client = nil
				lc.connectFailed(ctx, err)
				continue
			}
		}
		r := stmtRecord{i: i, start: time.Now()}
		marker := fmt.Sprintf("chaos_%d_%d_", lc.k, i)
		out, err, broken := runSSHCommand(ctx, client, chaosSSHCommand(c.sshLog, lc.k, i))
		r.end = time.Now()
		switch {
		case err == nil && strings.TrimSpace(out) == marker:
			r.ok = true
		case err == nil:
			r.err = "the output is not the command's: " + shortErr(errors.New(out))
		default:
			r.err = shortErr(err)
		}
		if broken {
			client.Close()
			client = nil
		}
		if ctx.Err() != nil && !r.ok {
			return // stopped by the test, not refused
		}
		lc.add(r)
	}
}

// dialSSH connects to proxy-ssh as the load's identity, for resource's root login, and
// checks the gateway's host key.
func (c *chaosCluster) dialSSH(resource string) (*gossh.Client, error) {
	pub, err := os.ReadFile(filepath.Join(c.dirs["proxy-ssh"], "ssh_host_ed25519_key.pub"))
	if err != nil {
		return nil, err
	}
	hostKey, _, _, _, err := gossh.ParseAuthorizedKey(pub)
	if err != nil {
		return nil, err
	}
	return gossh.Dial("tcp", c.sshProxy, &gossh.ClientConfig{User: resource + "+root", Auth: []gossh.AuthMethod{gossh.Password(c.reader)},
		HostKeyCallback: gossh.FixedHostKey(hostKey), Timeout: 10 * time.Second})
}

// runSSHCommand runs command in a session of its own, within 20 s. broken says the
// connection is not to be used again (it failed, or the command hung and the connection
// was closed to end it); a command the gateway refused (a non-zero exit, its reason on
// stderr) leaves it usable.
func runSSHCommand(ctx context.Context, client *gossh.Client, command string) (out string, err error, broken bool) {
	sess, err := client.NewSession()
	if err != nil {
		return "", err, true
	}
	defer sess.Close()
	var stdout, stderr strings.Builder
	sess.Stdout, sess.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run(command) }()
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case err = <-done:
	case <-t.C:
		client.Close()
		<-done
		return "", errors.New("no answer within 20s"), true
	case <-ctx.Done():
		client.Close()
		<-done
		return "", ctx.Err(), true
	}
	var exit *gossh.ExitError
	switch {
	case err == nil:
		return stdout.String(), nil, false
	case errors.As(err, &exit):
		return "", fmt.Errorf("exit %d: %s", exit.ExitStatus(), strings.TrimSpace(stderr.String())), false
	default:
		return "", err, true
	}
}

// checkHost checks that every command the SSH host ran (its marker in the file) has a
// decision that allowed it in the trail.
func checkHost(inv *invariants, log string, tr *chaosTrail) {
	ran := map[string]bool{}
	f, err := os.Open(log)
	if err != nil {
		inv.fail("the SSH host's record of the commands it ran: %v", err)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := chaosMarker.FindStringSubmatch(sc.Text()); m != nil {
			ran[m[1]+"-"+m[2]] = true
		}
	}
	if err := sc.Err(); err != nil {
		inv.fail("the SSH host's record of the commands it ran: %v", err)
	}
	inv.hostRan = len(ran)
	inv.hostUndecided = checkReached(inv, "SSH command", ran, tr)
}

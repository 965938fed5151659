package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/approvals"
	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/browsertest"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
	"github.com/gatehouse/gatehouse/services/dev/localssh/sshtest"
	"github.com/gatehouse/gatehouse/services/seal"
)

// TestSSHThroughTheGateway: an SSH host behind the whole platform (every component in one
// process, the shipped dev config plus an SSH resource): OpenSSH's ssh with a token, an exec
// held until a person approves it with the CLI, the session found and replayed from
// ClickHouse with exactly the output the client saw, and a revocation ending a live session.
func TestSSHThroughTheGateway(t *testing.T) {
	sshtest.Require(t)
	sshd := sshtest.Start(t)
	ch := chtest.Start(t)
	dataDir := t.TempDir()
	t.Setenv("GATEHOUSE_DATA_DIR", dataDir)
	t.Setenv("GATEHOUSE_HTTP_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_PG_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_SSH_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_HTTP_PROXY_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_CLICKHOUSE_ADDR", ch.Addr())
	t.Setenv("GATEHOUSE_DEMO_PG_ADDR", "127.0.0.1:1") // no session of the demo database here
	cfg, err := config.Load("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	cfg.Audit.SigningKeyFile = filepath.Join(dataDir, "audit-signing.key")
	_, err = seal.LoadKey(cfg.Audit.SigningKeyFile, true)
	require.NoError(t, err)
	cfg.Resources = append(cfg.Resources, config.Resource{Name: "web", Type: "ssh", Audit: "strict", Labels: map[string]string{"env": "dev"},
		SSH: &config.SSHBackend{Address: sshd.Addr(), Logins: []string{"root"}, KeyFile: sshd.ClientKeyFile, HostKey: sshd.HostKeyLine()}})
	cfg.Policies = append(cfg.Policies, config.Policy{Name: "web", Resources: []string{"web"}, Rules: []config.Rule{
		{Name: "ops-run-tools", Effect: "allow", When: `"ops" in identity.groups && request.ssh.request == "exec" && !request.ssh.dynamic && request.ssh.programs.all(p, p in ["echo", "seq", "sleep"])`},
		{Name: "ops-touch-with-approval", Effect: "require_approval", When: `"ops" in identity.groups && request.ssh.request == "exec" && request.ssh.programs == ["touch"]`,
			Reason: "changes on web need a second person", Approval: &config.Approval{Approvers: []string{"approvers"}, Timeout: 2 * time.Minute}},
	}})
	require.NoError(t, cfg.Validate())
	a := runApp(t, cfg, "all")
	base := "http://" + a.HTTPAddr()
	g := &gateway{api: base, approvalsAPI: base, issuer: base}
	_, port, err := net.SplitHostPort(a.ListenAddr("ssh"))
	require.NoError(t, err)
	ops := g.token(t, "oncall", "ops")
	approver := g.token(t, "approver-1", "approvers")

	// The gateway's host key, as `gatehouse ssh login` would write it for the client.
	hostPub, err := os.ReadFile(filepath.Join(dataDir, "ssh_host_ed25519_key.pub"))
	require.NoError(t, err)
	dir := t.TempDir()
	known := filepath.Join(dir, "known_hosts")
	require.NoError(t, os.WriteFile(known, []byte("[127.0.0.1]:"+port+" "+string(hostPub)), 0o600))
	askpass := filepath.Join(dir, "askpass")
	require.NoError(t, os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$GH_TOKEN\"\n"), 0o700))
	sshCmd := func(token string, args ...string) *exec.Cmd {
		cmd := exec.Command("ssh", append([]string{"-p", port, "-F", "/dev/null", "-o", "UserKnownHostsFile=" + known, "-o", "StrictHostKeyChecking=yes",
			"-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1"}, args...)...)
		cmd.Env = append(os.Environ(), "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "GH_TOKEN="+token, "DISPLAY=")
		return cmd
	}

	// An allowed exec: the output as the host wrote it.
	out, err := sshCmd(ops, "web+root@127.0.0.1", "echo hello; seq 1 500").Output()
	require.NoError(t, err)
	want := "hello\n"
	for i := 1; i <= 500; i++ {
		want += fmt.Sprintf("%d\n", i)
	}
	require.Equal(t, want, string(out))

	// An exec that needs approval waits, told so on stderr, and runs once approved.
	target := filepath.Join(t.TempDir(), "approved")
	held := sshCmd(ops, "web+root@127.0.0.1", "touch "+target)
	var heldErr bytes.Buffer
	held.Stderr = &heldErr
	require.NoError(t, held.Start())
	var pending approvals.Approval
	require.Eventually(t, func() bool {
		var list struct {
			Approvals []approvals.Approval `json:"approvals"`
		}
		require.NoError(t, g.cliJSONAt(t, base, approver, &list, "approvals", "list"))
		for _, x := range list.Approvals {
			if x.Request.Statement == "touch "+target {
				pending = x
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, "ops-touch-with-approval", pending.Request.Rule)
	_, err = os.Stat(target)
	require.True(t, os.IsNotExist(err), "the held command ran before it was approved")
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, cli.Main([]string{"approvals", "approve", pending.ID, "--reason", "INC-7", "--url", base, "--token", approver}, &stdout, &stderr), stderr.String())
	require.NoError(t, held.Wait(), heldErr.String())
	require.Contains(t, heldErr.String(), "waiting for approval "+pending.ID)
	_, err = os.Stat(target)
	require.NoError(t, err, "the approved command did not run")

	// The sessions are in ClickHouse: found by protocol, replayed with the output the client
	// saw, byte for byte (the asciicast's output events).
	var sessions struct {
		Sessions []struct {
			ID       string `json:"id"`
			Protocol string `json:"protocol"`
			Login    string `json:"login"`
		} `json:"sessions"`
	}
	auditor := g.token(t, "auditor", "auditors")
	require.Eventually(t, func() bool {
		if err := g.cliJSON(t, auditor, &sessions, "sessions", "list", "--protocol", "ssh", "--resource", "web"); err != nil {
			return false
		}
		return len(sessions.Sessions) >= 2
	}, 60*time.Second, 200*time.Millisecond)
	for _, s := range sessions.Sessions {
		require.Equal(t, "ssh", s.Protocol)
		require.Equal(t, "root", s.Login)
	}
	var replayed string
	for _, s := range sessions.Sessions {
		stdout.Reset()
		stderr.Reset()
		code := cli.Main([]string{"sessions", "replay", s.ID, "--asciicast", "-", "--url", base, "--token", auditor}, &stdout, &stderr)
		if code != 0 {
			continue
		}
		var data strings.Builder
		for i, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
			if i == 0 {
				continue // the header
			}
			var ev []any
			require.NoError(t, json.Unmarshal([]byte(line), &ev))
			if ev[1] == "o" {
				data.WriteString(ev[2].(string))
			}
		}
		if strings.HasPrefix(data.String(), "hello\n") {
			replayed = data.String()
		}
	}
	require.Equal(t, want, replayed, "the replay is not what the client saw")

	// The console plays it in the terminal player, with the output the client saw.
	consolePlays(t, base, sessions.Sessions[0].ID, sessions.Sessions[1].ID)

	// A revocation ends a live session, telling the client why.
	c, err := gossh.Dial("tcp", "127.0.0.1:"+port, &gossh.ClientConfig{User: "web+root", Auth: []gossh.AuthMethod{gossh.Password(ops)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second})
	require.NoError(t, err)
	defer c.Close()
	s, err := c.NewSession()
	require.NoError(t, err)
	var liveErr bytes.Buffer
	s.Stderr = &liveErr
	pipe, err := s.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, s.Start("echo up; sleep 600"))
	line := make([]byte, 3)
	_, err = pipe.Read(line)
	require.NoError(t, err)
	admin := g.token(t, "admin-1", "gatehouse-admins")
	require.Equal(t, 0, cli.Main([]string{"revoke", "--identity", "oncall", "--reason", "incident over", "--url", base, "--token", admin}, &stdout, &stderr), stderr.String())
	ended := make(chan error, 1)
	go func() { ended <- s.Wait() }()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the revoked SSH session is still running")
	}
	require.Contains(t, liveErr.String(), "incident over")
}

// consolePlays signs an auditor in to the console and plays the terminal recording of
// whichever of the sessions has one: the player shows the output the client saw.
func consolePlays(t *testing.T, base string, ids ...string) {
	b := newBrowser(t, base, "ssh-replay")
	b.signInOIDC("/sessions?protocol=ssh", "bob@example.com")
	for _, id := range ids {
		b.Open("/sessions/"+id, `[data-testid="timeline"]`)
		// The recordings section goes away (none) or offers the player (once listed).
		b.WaitJS(`!!document.querySelector('[data-testid="verification"]') && (!document.querySelector('[data-testid="terminals"]') || !!document.querySelector('[data-testid="player-load"]'))`)
		if !browsertest.Eval[bool](b.Browser, `!!document.querySelector('[data-testid="player-load"]')`) {
			continue // the session whose command waited for approval printed nothing
		}
		b.Run(chromedp.Click(chromedp.CSS(`[data-testid="player-load"]`)))
		b.WaitJS(`!!document.querySelector('[data-testid="player"] .ap-playback-button')`)
		b.Run(chromedp.Click(chromedp.CSS(`[data-testid="player"] .ap-playback-button`)))
		b.WaitText(`[data-testid="player"]`, "500")
		require.Contains(t, b.Text(`[data-testid="player"]`), "499")
		b.Shot("ssh-player")
		b.Accessible("ssh-player")
		return
	}
	t.Fatal("no SSH session offered its terminal recording in the console")
}

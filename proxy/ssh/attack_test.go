package ssh_test

// Attack tests: an outsider's attempts against the SSH proxy's promises. A test that fails
// is a finding (it asserts the promise); a test that passes is an attempt that held.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/sshcert"
)

// attackAllowed is the allow-list docs/policy.md recommends: only programs that cannot run
// others, nothing dynamic, every program run by its own name, and nothing written.
const attackAllowed = `request.ssh.request == "exec" && !request.ssh.dynamic && request.ssh.files_written.size() == 0 && ` +
	`request.ssh.commands.all(c, c.program == c.name) && ` +
	`request.ssh.programs.all(p, p in ["echo", "id", "cat", "ls", "printf", "head", "true", "whoami", "sleep"])`

var attackPolicies = []config.Policy{{Name: "hosts", Resources: []string{"web", "web-mask"}, Rules: []config.Rule{
	{Name: "programs", Effect: "allow", When: attackAllowed},
	{Name: "sessions", Effect: "allow", When: `request.ssh.request in ["pty-req", "shell", "subsystem"]`},
	{Name: "sftp-read", Effect: "allow", When: `request.ssh.request == "sftp" && request.ssh.sftp.op in ["read", "stat", "list", "realpath", "readlink", "close"]`},
	{Name: "sftp-write", Effect: "allow", When: `request.ssh.request == "sftp" && request.ssh.sftp.path.startsWith("/tmp/gh-up/")`},
}}, {Name: "masking", Resources: []string{"web-mask"}, Rules: []config.Rule{
	{Name: "cards", Effect: "mask", When: `true`, Mask: &config.Mask{Detectors: []string{"card"}}},
}}}

// execOn runs cmd on a new session channel of c (no terminal), stdin given.
func execOn(t *testing.T, c *gossh.Client, cmd, stdin string) (stdout, stderr string, code int) {
	t.Helper()
	s, err := c.NewSession()
	require.NoError(t, err)
	defer s.Close()
	var o, er bytes.Buffer
	s.Stdout, s.Stderr, s.Stdin = &o, &er, strings.NewReader(stdin)
	err = s.Run(cmd)
	if ee, ok := err.(*gossh.ExitError); ok {
		code = ee.ExitStatus()
	} else if err != nil {
		code = -1
	}
	return o.String(), er.String(), code
}

// marker is a unique path under /tmp that must never come to exist.
func marker(t *testing.T, name string) string {
	p := fmt.Sprintf("/tmp/gh-atk-%s-%d", name, time.Now().UnixNano())
	t.Cleanup(func() { os.RemoveAll(p) })
	return p
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// allEvents is every payload of a resource's trail as one string.
func allPayloads(evs []schemas.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		b.Write(ev.Payload)
		b.WriteByte('\n')
	}
	return b.String()
}

// ---------------------------------------------------------------------------------------
// Promise 2: an allow-list of programs cannot be escaped.

// runEscapes runs each command (with {M} replaced by a fresh marker) through the gateway
// under the recommended allow-list and requires that none made its marker.
func runEscapes(t *testing.T, cmds map[string]string, setup func(m string) string) {
	e := startWith(t, attackPolicies)
	c, err := e.dial(t, "web+root", e.token)
	require.NoError(t, err)
	defer c.Close()
	for name, tmpl := range cmds {
		t.Run(name, func(t *testing.T) {
			m := marker(t, "esc")
			cmd := strings.ReplaceAll(tmpl, "{M}", m)
			if setup != nil {
				cmd = strings.ReplaceAll(cmd, "{S}", setup(m))
			}
			info := policy.AnalyzeShell(cmd)
			out, errOut, code := execOn(t, c, cmd, "")
			require.False(t, exists(m), "the allow-list was escaped: %q ran a program it does not allow (exit %d, out %q, err %q; the policy saw programs %v, dynamic %v)",
				cmd, code, out, errOut, info.Programs, info.Dynamic)
		})
	}
}

// TestAttackExecSecondOrderEvaluation: bash evaluates array subscripts (and arithmetic, and
// prompt strings) found in *values* — a quoted literal argument to printf -v, [[ -v ]],
// [[ -eq ]], or a variable read by $((x)), ${!x}, ${x@P} — running the $(...) inside.
// The parser sees literal words and a harmless program list. FINDING.
func TestAttackExecSecondOrderEvaluation(t *testing.T) {
	runEscapes(t, map[string]string{
		"printf -v subscript":   `printf -v 'x[$(touch {M})]' 1`,
		"[[ -v subscript ]]":    `[[ -v 'x[$(touch {M})]' ]]; echo ok`,
		"[[ -eq arithmetic ]]":  `[[ 'x[$(touch {M})]' -eq 0 ]]; echo ok`,
		"$((var)) arithmetic":   `x='a[$(touch {M})]'; echo $((x))`,
		"${!var} indirection":   `x='a[$(touch {M})]'; echo ${!x}`,
		"${var@P} prompt":       `x='$(touch {M})'; echo "${x@P}"`,
		"$(( 'quoted' ))":       `echo $(( 'a[$(touch {M})]' ))`,
		"printf -v then $((x))": `printf -v x '%s' 'a[$(touch {M})]'; echo $((x))`,
	}, nil)
}

// TestAttackExecPrintfSetsPath: `printf -v PATH` changes what a program name runs; the
// policy sees `ls` run as `ls` (program == name holds) and no assignment to PATH. FINDING.
func TestAttackExecPrintfSetsPath(t *testing.T) {
	bin := marker(t, "bin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	runEscapes(t, map[string]string{
		"printf -v PATH": `printf -v PATH %s {S}; ls`,
	}, func(m string) string {
		// A program the login placed on the host, under an allowed name.
		require.NoError(t, os.WriteFile(filepath.Join(bin, "ls"), []byte("#!/bin/sh\n/usr/bin/touch "+m+"\n"), 0o755))
		return bin
	})
}

// TestAttackExecClassicEscapesHeld: the classic escapes the parser is meant to see through.
// HELD.
func TestAttackExecClassicEscapesHeld(t *testing.T) {
	runEscapes(t, map[string]string{
		"semicolon":        `echo hi; touch {M}`,
		"and":              `echo hi && touch {M}`,
		"or":               `false || touch {M}`,
		"pipe":             `echo hi | touch {M}`,
		"newline":          "echo hi\ntouch {M}",
		"substitution":     `echo $(touch {M})`,
		"backticks":        "echo `touch {M}`",
		"process subst":    `cat <(touch {M})`,
		"bash -c":          `bash -c 'touch {M}'`,
		"eval":             `eval 'touch {M}'`,
		"sudo":             `sudo touch {M}`,
		"env":              `env touch {M}`,
		"xargs":            `echo {M} | xargs touch`,
		"quotes":           `'t''ouch' {M}`,
		"backslash":        `\touch {M}`,
		"ansi-c":           `$'\x74ouch' {M}`,
		"path":             `/usr/bin/../bin/touch {M}`,
		"heredoc to sh":    "sh <<'EOF'\ntouch {M}\nEOF",
		"here-string":      `bash <<< 'touch {M}'`,
		"alias":            "shopt -s expand_aliases\nalias echo='touch {M}'\necho",
		"function":         `echo() { touch {M}; }; echo`,
		"function via cat": `cat() { touch {M}; }; cat /dev/null`,
		"IFS":              `IFS=_; x=touch_{M}; $x`,
		"brace":            `{touch,{M}}`,
		"glob":             `/usr/bin/tou?h {M}`,
		"redirect":         `echo x > {M}`,
		"redirect dup":     `echo x >& {M}`,
		"redirect rw":      `cat <> {M}`,
		"exec":             `exec touch {M}`,
		"command":          `command touch {M}`,
		"time":             `time touch {M}`,
		"coproc":           `coproc touch {M}`,
		"background":       `echo & touch {M}`,
		"subshell":         `(touch {M})`,
		"group":            `{ touch {M}; }`,
		"if":               `if true; then touch {M}; fi`,
		"case":             `case x in y) ;; *) touch {M};; esac`,
		"for":              `for i in 1; do touch {M}; done`,
		"default value":    `echo ${x:-$(touch {M})}`,
		"arith subst":      `echo $((a[$(touch {M})]))`,
		"PATH assign":      `PATH=/nonexistent:$PATH ls`,
		"BASH_ENV":         `BASH_ENV=/dev/null bash -c true; touch {M}`,
		"trap":             `trap 'touch {M}' EXIT; echo`,
		"find -exec":       `find /tmp -maxdepth 0 -exec touch {M} \;`,
		"ssh proxycommand": `ssh -o ProxyCommand='touch {M}' x true`,
		"source":           `echo 'touch {M}' > /dev/null; . /dev/stdin <<< 'touch {M}'`,
		"nul byte":         "echo hi\x00; touch {M}",
		"carriage return":  "echo hi\rtouch {M}",
		"long command":     strings.Repeat(" ", 130<<10) + `touch {M}`,
	}, nil)
}

// ---------------------------------------------------------------------------------------
// Promise 3: an sftp path rule cannot be escaped.

// sftpBatch runs OpenSSH's sftp with a batch, logged in with a certificate.
func sftpBatch(t *testing.T, e *env, batch string) (string, int) {
	keyFile, _ := e.certKey(t, ada, time.Now().Add(time.Hour))
	_, port, _ := net.SplitHostPort(e.addr)
	f := filepath.Join(t.TempDir(), "batch")
	require.NoError(t, os.WriteFile(f, []byte(batch), 0o600))
	out, errOut, code := run(t, "sftp", append(append([]string{"-P", port, "-b", f}, e.certArgs(keyFile)...), "web+root@127.0.0.1")...)
	return out + errOut, code
}

// sftpSetup makes an upload directory the rule allows, a directory outside it holding a
// victim file, and a local file to upload.
func sftpSetup(t *testing.T) (up, outside, src string) {
	up = filepath.Join("/tmp/gh-up", fmt.Sprintf("atk-%d", time.Now().UnixNano()))
	require.NoError(t, os.MkdirAll(up, 0o755))
	t.Cleanup(func() { os.RemoveAll(up) })
	outside = marker(t, "outside")
	require.NoError(t, os.MkdirAll(outside, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "victim"), []byte("original\n"), 0o644))
	src = filepath.Join(t.TempDir(), "src")
	require.NoError(t, os.WriteFile(src, []byte("ATTACKER CONTENT\n"), 0o600))
	return
}

// TestAttackSftpRenameOutOfUploadDir: RENAME is decided as one operation whose path is the
// source; a rule on path lets a file allowed in /tmp/gh-up/ be moved anywhere (over any
// file). FINDING.
func TestAttackSftpRenameOutOfUploadDir(t *testing.T) {
	e := start(t)
	up, outside, src := sftpSetup(t)
	out, _ := sftpBatch(t, e, fmt.Sprintf("put %s %s/a\n-rename %s/a %s/moved\n", src, up, up, outside))
	require.False(t, exists(filepath.Join(outside, "moved")), "a file was renamed out of /tmp/gh-up/ to %s:\n%s", outside, out)
}

// TestAttackSftpSymlinkEscape: a symlink created via sftp inside /tmp/gh-up/ pointing
// outside; writes through it have a path under /tmp/gh-up/ and land outside. FINDING.
func TestAttackSftpSymlinkEscape(t *testing.T) {
	e := start(t)
	up, outside, src := sftpSetup(t)
	out, _ := sftpBatch(t, e, fmt.Sprintf("-symlink %s %s/l\n-put %s %s/l/planted\n", outside, up, src, up))
	require.False(t, exists(filepath.Join(outside, "planted")), "a write through a symlink made via sftp landed outside /tmp/gh-up/:\n%s", out)
}

// TestAttackSftpHardlinkEscape: hardlink@openssh.com is decided as write(new name) +
// read(old name); but the new name writes the old file's inode. Link a file outside into
// /tmp/gh-up/, then write it there. FINDING.
func TestAttackSftpHardlinkEscape(t *testing.T) {
	e := start(t)
	up, outside, src := sftpSetup(t)
	victim := filepath.Join(outside, "victim")
	out, _ := sftpBatch(t, e, fmt.Sprintf("-ln %s %s/h\n-put %s %s/h\n", victim, up, src, up))
	got, err := os.ReadFile(victim)
	require.NoError(t, err)
	require.Equal(t, "original\n", string(got), "a file outside /tmp/gh-up/ was overwritten through a hard link made via sftp:\n%s", out)
}

// TestAttackSftpPathTricksHeld: `..`, relative paths, setstat outside. HELD.
func TestAttackSftpPathTricksHeld(t *testing.T) {
	e := start(t)
	up, outside, src := sftpSetup(t)
	rel := strings.TrimPrefix(outside, "/tmp/")
	out, _ := sftpBatch(t, e, fmt.Sprintf("-put %s %s/../../%s/dotdot\n-cd /tmp\n-put %s %s/relative\n-chmod 777 %s/victim\n-mkdir %s/newdir\n-rm %s/victim\n",
		src, up, rel, src, rel, outside, outside, outside))
	require.False(t, exists(filepath.Join(outside, "dotdot")), out)
	require.False(t, exists(filepath.Join(outside, "relative")), out)
	require.False(t, exists(filepath.Join(outside, "newdir")), out)
	st, err := os.Stat(filepath.Join(outside, "victim"))
	require.NoError(t, err, out)
	require.Equal(t, os.FileMode(0o644), st.Mode().Perm(), out)
}

// TestAttackScpClassicProtocol: `scp -O` speaks the classic protocol over an exec of
// `scp -t DIR`; the gateway does not look into it (newSCP is a stub), so the sftp path rule
// does not apply and no ssh.file is recorded. Under testPolicies (which allow the program
// scp, as the harness's own sftp-write rule is meant to bound writes) a file lands outside
// /tmp/gh-up/. FINDING (recording: no ssh.file for the transfer).
func TestAttackScpClassicProtocol(t *testing.T) {
	e := start(t)
	_, outside, src := sftpSetup(t)
	keyFile, _ := e.certKey(t, ada, time.Now().Add(time.Hour))
	_, port, _ := net.SplitHostPort(e.addr)
	_, errOut, code := run(t, "scp", append(append([]string{"-O", "-P", port}, e.certArgs(keyFile)...), src, "web+root@127.0.0.1:"+outside+"/classic")...)
	t.Logf("scp -O: exit %d %s", code, errOut)
	landed := exists(filepath.Join(outside, "classic"))
	evs := e.events(t, "web", sessionsEnded(1))
	files := ofType[schemas.SshFile](t, evs, schemas.TypeSshFile)
	if landed {
		require.NotEmpty(t, files, "a file went through scp -O with no ssh.file event")
	}
	require.False(t, landed, "scp -O wrote %s/classic, outside the sftp-write rule's /tmp/gh-up/", outside)
}

// ---------------------------------------------------------------------------------------
// Promise 4: masking of an exec's output.

// TestAttackMaskLongRunBoundary: the stream masker holds at most 256 bytes of a trailing
// run of "value" characters; past that it cuts the run and masks the two parts apart. A
// card straddling the cut goes out in clear: no pause, no trick, one write. FINDING.
func TestAttackMaskLongRunBoundary(t *testing.T) {
	e := startWith(t, attackPolicies)
	c, err := e.dial(t, "web-mask+root", e.token)
	require.NoError(t, err)
	defer c.Close()
	// 19 bytes of card, a space, 250 letters: the run is 270 bytes, the cut falls at 14.
	line := "4111 1111 1111 1111 " + strings.Repeat("a", 250)
	out, errOut, code := execOn(t, c, "printf '%s' '"+line+"'; sleep 0.5; printf '\\n'", "")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "aaaa")
	require.NotContains(t, out, "4111 1111 1111 1111", "a card number reached the client in clear")

	// Realistic: a log line of prose longer than 256 bytes, read as the host writes it.
	prose := "payment accepted for customer Jane Doe card 4111 1111 1111 1111 amount 100 USD " + strings.Repeat("and more words ", 14)
	out, errOut, code = execOn(t, c, "printf '%s' '"+prose+"'; sleep 0.5; printf ' end\\n'", "")
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, out, "4111 1111 1111 1111", "a card number in a long line reached the client in clear")
}

// TestAttackMaskSplitsHeld: pauses, separators, stdout/stderr, unicode. HELD (the card is
// masked whenever it would be found whole).
func TestAttackMaskSplitsHeld(t *testing.T) {
	e := startWith(t, attackPolicies)
	c, err := e.dial(t, "web-mask+root", e.token)
	require.NoError(t, err)
	defer c.Close()
	for name, cmd := range map[string]string{
		"pause per digit": `for d in 4 1 1 1 ' ' 1 1 1 1 ' ' 1 1 1 1 ' ' 1 1 1 1; do printf '%s' "$d"; sleep 0.05; done; echo`,
		"dashes":          `printf '4111-'; sleep 0.3; printf '1111-1111-1111\n'`,
		"no separators":   `printf '41111111'; sleep 0.3; printf '11111111\n'`,
		"stderr":          `printf '4111 1111 ' >&2; sleep 0.3; printf '1111 1111\n' >&2`,
		"utf8 before":     `printf 'é4111 1111 '; sleep 0.3; printf '1111 1111é\n'`,
		"escape after":    `printf '4111 1111 1111 1111\033[0m\n'`,
		"crlf":            `printf '4111 1111 1111 1111\r\n'`,
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := execOn(t, c, cmd, "")
			require.Equal(t, 0, code, errOut)
			all := strings.NewReplacer(" ", "", "-", "").Replace(out + errOut)
			require.NotContains(t, all, "4111111111111111", "clear: out %q err %q", out, errOut)
		})
	}
	evs := e.events(t, "web-mask", sessionsEnded(0))
	_ = evs
}

type lockedWriter struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestAttackMaskPtyRecording: with a terminal the client's stream is not masked (by
// design); its recording must be. HELD if no clear card is in the trail.
func TestAttackMaskPtyRecording(t *testing.T) {
	e := startWith(t, attackPolicies)
	c, err := e.dial(t, "web-mask+root", e.token)
	require.NoError(t, err)
	s, err := c.NewSession()
	require.NoError(t, err)
	require.NoError(t, s.RequestPty("xterm", 40, 200, gossh.TerminalModes{}))
	var out bytes.Buffer
	s.Stdout = &out
	require.NoError(t, s.Run(`a=41; b=55; printf '%s' "${a}11 1111 "; sleep 0.3; printf '1111 1111\n'; printf '%s' "${b}00 0000 0000 0004"`))
	t.Logf("client saw (not masked, by design): %q", out.String())
	c.Close()
	evs := e.events(t, "web-mask", sessionsEnded(1))
	p := allPayloads(evs)
	require.NotContains(t, p, "4111 1111 1111 1111")
	require.NotContains(t, p, "5500 0000 0000 0004")
}

// ---------------------------------------------------------------------------------------
// Promise 5: recording.

// TestAttackRecordingLimitHidesLaterKeystrokes: a channel's recording stops at
// MaxRecordedBytes, input and output together; print a megabyte first, and everything
// typed after it in the shell is unrecorded (only counted as dropped). FINDING.
func TestAttackRecordingLimitHidesLaterKeystrokes(t *testing.T) {
	e := startWith(t, attackPolicies)
	c, err := e.dial(t, "web+root", e.token)
	require.NoError(t, err)
	s, err := c.NewSession()
	require.NoError(t, err)
	require.NoError(t, s.RequestPty("xterm", 40, 200, gossh.TerminalModes{}))
	in, err := s.StdinPipe()
	require.NoError(t, err)
	var out syncBuf
	s.Stdout = &out
	require.NoError(t, s.Shell())
	waitFor := func(sub string) {
		require.Eventually(t, func() bool { return strings.Contains(out.String(), sub) }, 2*time.Minute, 50*time.Millisecond, "never saw %q", sub)
	}
	_, _ = io.WriteString(in, "head -c 1100000 /dev/zero | tr '\\0' x; echo; echo FLOOD-$((1+1))\r")
	waitFor("FLOOD-2")
	_, _ = io.WriteString(in, "echo UNSEEN-ACTION-$((40+2))\r")
	waitFor("UNSEEN-ACTION-42")
	_, _ = io.WriteString(in, "exit\r")
	waitEnd(s, c)
	evs := e.events(t, "web", sessionsEnded(1))
	var input, output strings.Builder
	dropped := uint64(0)
	for _, x := range ofType[schemas.SshIo](t, evs, schemas.TypeSshIo) {
		dropped += x.Dropped
		for _, f := range x.Frames {
			if f.Code == "i" {
				input.WriteString(f.Data)
			} else {
				output.WriteString(f.Data)
			}
		}
	}
	t.Logf("dropped %d bytes", dropped)
	require.Contains(t, input.String(), "echo UNSEEN-ACTION-", "a command typed after a megabyte of output is not in the recording")
	// Output past the channel's bound is dropped, and counted (docs/ssh.md, Limits): what is
	// typed is recorded past it, so who ran what stays on record.
	require.Greater(t, dropped, uint64(0), "the output past the bound is not counted as dropped")
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestAttackRecordSudoStdinPassword: without a terminal there is no echo to go by: a
// password given to `sudo -S` on the exec's input is recorded in clear as an "i" frame.
// FINDING (the promise says a password at a prompt that does not echo is recorded as '*').
func TestAttackRecordSudoStdinPassword(t *testing.T) {
	e := start(t)
	c, err := e.dial(t, "web+"+sudoUser, e.token)
	require.NoError(t, err)
	out, errOut, code := execOn(t, c, "sudo -S -k -p 'Password: ' whoami", sudoPassword+"\n")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "root\n", out)
	c.Close()
	evs := e.events(t, "web", sessionsEnded(1))
	require.NotContains(t, allPayloads(evs), sudoPassword, "the sudo password is in the audit trail in clear")
}

// TestAttackRecordPromptNotRecognised: a secret typed at a non-echoing prompt whose text
// does not read like a password prompt ("API key:", "Enter it:") while something else
// prints the same characters (here: the prompt line of a background job) — the echo
// tracker matches keystrokes as a subsequence of any output and calls them echoed.
// FINDING (LOW: needs the typist's own background output or a lucky match).
func TestAttackRecordPromptNotRecognised(t *testing.T) {
	e := startWith(t, attackPolicies)
	c, err := e.dial(t, "web+root", e.token)
	require.NoError(t, err)
	s, err := c.NewSession()
	require.NoError(t, err)
	require.NoError(t, s.RequestPty("xterm", 40, 200, gossh.TerminalModes{}))
	in, err := s.StdinPipe()
	require.NoError(t, err)
	var out syncBuf
	s.Stdout = &out
	require.NoError(t, s.Shell())
	waitFor := func(sub string) {
		require.Eventually(t, func() bool { return strings.Contains(out.String(), sub) }, 2*time.Minute, 20*time.Millisecond, "never saw %q", sub)
	}
	const secret = "Zq7Kx9Wv"
	_, _ = io.WriteString(in, "P=API; (sleep 1; printf 'Zz qq 77 KK xx 99 WW vv') & read -s -p \"$P key: \" k; echo; echo GOT-$((${#k}+100))\r")
	waitFor("API key: ")
	time.Sleep(200 * time.Millisecond)
	_, _ = io.WriteString(in, secret)
	waitFor("WW vv")
	_, _ = io.WriteString(in, "\r")
	waitFor("GOT-108")
	_, _ = io.WriteString(in, "exit\r")
	waitEnd(s, c)
	evs := e.events(t, "web", sessionsEnded(1))
	require.NotContains(t, allPayloads(evs), secret, "a secret typed with echo off is recorded in clear")
}

// TestAttackRecordPasswordTypedSlowlyHeld: the sudo prompt, the password typed a key at a
// time with pauses and a backspace. HELD.
func TestAttackRecordPasswordTypedSlowlyHeld(t *testing.T) {
	e := startWith(t, attackPolicies)
	c, err := e.dial(t, "web+"+sudoUser, e.token)
	require.NoError(t, err)
	s, err := c.NewSession()
	require.NoError(t, err)
	require.NoError(t, s.RequestPty("xterm", 40, 200, gossh.TerminalModes{}))
	in, err := s.StdinPipe()
	require.NoError(t, err)
	var out syncBuf
	s.Stdout = &out
	require.NoError(t, s.Shell())
	waitFor := func(sub string) {
		require.Eventually(t, func() bool { return strings.Contains(out.String(), sub) }, 2*time.Minute, 20*time.Millisecond, "never saw %q in %q", sub, out.String())
	}
	_, _ = io.WriteString(in, "sudo -k; sudo -p \"p$(echo w): \" echo SUDO-$((1+1))\r")
	waitFor("pw: ")
	for _, ch := range sudoPassword[:4] + "X\x7f" + sudoPassword[4:] {
		_, _ = io.WriteString(in, string(ch))
		time.Sleep(30 * time.Millisecond)
	}
	_, _ = io.WriteString(in, "\r")
	waitFor("SUDO-2")
	_, _ = io.WriteString(in, "exit\r")
	waitEnd(s, c)
	evs := e.events(t, "web", sessionsEnded(1))
	p := allPayloads(evs)
	require.NotContains(t, p, sudoPassword)
	require.NotContains(t, p, sudoPassword[4:])
}

// TestAttackRecordAbruptCloseHeld: the client sends a command and closes at once; the exec
// request, its decision and output are still recorded. HELD.
func TestAttackRecordAbruptCloseHeld(t *testing.T) {
	e := startWith(t, attackPolicies)
	c, err := e.dial(t, "web+root", e.token)
	require.NoError(t, err)
	for i := 0; i < 4; i++ {
		s, err := c.NewSession()
		require.NoError(t, err)
		require.NoError(t, s.Start(fmt.Sprintf("echo ABRUPT-%d", i)))
	}
	c.Close()
	evs := e.events(t, "web", sessionsEnded(1))
	reqs := ofType[schemas.SshRequest](t, evs, schemas.TypeSshRequest)
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r.Command, "echo ABRUPT-") {
			n++
		}
	}
	require.Equal(t, 4, n)
	require.Len(t, ofType[schemas.Decision](t, evs, schemas.TypeDecision), 4)
}

// ---------------------------------------------------------------------------------------
// Promise 1: nothing before policy.

// TestAttackInputBeforeDecisionHeld: input sent before (and with) a denied exec never
// reaches the host; env, agent, x11, port forwarding, unknown requests refused. HELD.
func TestAttackInputBeforeDecisionHeld(t *testing.T) {
	e := startWith(t, attackPolicies)
	c, err := e.dial(t, "web+root", e.token)
	require.NoError(t, err)
	defer c.Close()
	m := marker(t, "stdin")
	ch, reqs, err := c.OpenChannel("session", nil)
	require.NoError(t, err)
	go gossh.DiscardRequests(reqs)
	// Input first, then a denied shell-reading exec, then an allowed one on the same channel.
	_, _ = ch.Write([]byte("touch " + m + "\n"))
	ok, _ := ch.SendRequest("env", true, gossh.Marshal(struct{ N, V string }{"BASH_ENV", "/tmp/x"}))
	require.False(t, ok, "env allowed without a rule")
	ok, _ = ch.SendRequest("exec", true, gossh.Marshal(struct{ C string }{"bash -s"}))
	_, _ = ch.SendRequest("exec", true, gossh.Marshal(struct{ C string }{"bash"}))
	_, _ = ch.SendRequest("shell", true, nil)
	_, _ = ch.SendRequest("subsystem", true, gossh.Marshal(struct{ C string }{"sftp\x00x"}))
	_ = ch.CloseWrite()
	_, _ = io.ReadAll(ch)
	ch.Close()
	time.Sleep(300 * time.Millisecond)
	require.False(t, exists(m), "client input reached a shell on the host")

	// Forwarding: direct-tcpip, tcpip-forward, agent, x11 channel and requests.
	_, err = c.Dial("tcp", e.sshd.Addr())
	require.Error(t, err)
	_, err = c.Listen("tcp", "127.0.0.1:0")
	require.Error(t, err)
	_, _, err = c.OpenChannel("x11", gossh.Marshal(struct {
		A string
		P uint32
	}{"127.0.0.1", 1}))
	require.Error(t, err)
	_, _, err = c.OpenChannel("auth-agent@openssh.com", nil)
	require.Error(t, err)
	ok, _, err = c.SendRequest("streamlocal-forward@openssh.com", true, gossh.Marshal(struct{ P string }{"/tmp/gh-atk.sock"}))
	require.NoError(t, err)
	require.False(t, ok)
	_, _, err = c.OpenChannel("direct-streamlocal@openssh.com", gossh.Marshal(struct {
		P, H string
		Port uint32
	}{"/run/sshd.sock", "", 0}))
	require.Error(t, err)
}

// ---------------------------------------------------------------------------------------
// Promise 6: authentication.

func TestAttackAuthUserNamesHeld(t *testing.T) {
	e := startWith(t, attackPolicies)
	for _, u := range []string{"web+root+x", "web+root\x00", "web\u200b+root", "WEB+root", "web +root", "web+ root",
		"web+nobody", "+root", "web+" + strings.Repeat("r", 70000), strings.Repeat("w", 100000)} {
		c, err := e.dial(t, u, e.token)
		if err == nil {
			c.Close()
		}
		require.Error(t, err, "user %q got in", truncateForLog(u))
	}
	// web+ is web's first login (documented): check it is root, not something else.
	c, err := e.dial(t, "web+", e.token)
	require.NoError(t, err)
	out, _, code := execOn(t, c, "whoami", "")
	require.Equal(t, 0, code)
	require.Equal(t, "root\n", out)
	c.Close()
}

func truncateForLog(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func TestAttackAuthCertificatesHeld(t *testing.T) {
	e := startWith(t, attackPolicies)
	dialCert := func(s gossh.Signer) error {
		c, err := gossh.Dial("tcp", e.addr, &gossh.ClientConfig{User: "web+root", Auth: []gossh.AuthMethod{gossh.PublicKeys(s)},
			HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second})
		if err == nil {
			c.Close()
		}
		return err
	}
	resign := func(change func(*gossh.Certificate), signWith gossh.Signer) gossh.Signer {
		_, signer := e.certKey(t, ada, time.Now().Add(time.Hour))
		cert, err := sshcert.Sign(e.ca, signer.PublicKey(), ada, time.Now().Add(time.Hour), time.Now())
		require.NoError(t, err)
		change(cert)
		require.NoError(t, cert.SignCert(rand.Reader, signWith))
		cs, err := gossh.NewCertSigner(cert, signer)
		require.NoError(t, err)
		return cs
	}
	require.NoError(t, dialCert(resign(func(*gossh.Certificate) {}, e.ca)), "a good certificate is accepted")
	other, err := gossh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32)))
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		f  func(*gossh.Certificate)
		by gossh.Signer
	}{
		"host cert":        {func(c *gossh.Certificate) { c.CertType = gossh.HostCert }, e.ca},
		"expired":          {func(c *gossh.Certificate) { c.ValidBefore = uint64(time.Now().Add(-time.Minute).Unix()) }, e.ca},
		"not yet valid":    {func(c *gossh.Certificate) { c.ValidAfter = uint64(time.Now().Add(time.Hour).Unix()) }, e.ca},
		"other CA":         {func(*gossh.Certificate) {}, other},
		"critical force":   {func(c *gossh.Certificate) { c.CriticalOptions = map[string]string{"force-command": "true"} }, e.ca},
		"critical source":  {func(c *gossh.Certificate) { c.CriticalOptions = map[string]string{"source-address": "10.9.9.9/32"} }, e.ca},
		"other principal":  {func(c *gossh.Certificate) { c.ValidPrincipals = []string{"root"} }, e.ca},
		"garbage identity": {func(c *gossh.Certificate) { c.Permissions.Extensions = map[string]string{"permit-pty": ""} }, e.ca},
	} {
		t.Run(name, func(t *testing.T) {
			require.Error(t, dialCert(resign(tc.f, tc.by)))
		})
	}
	// A plain key, then a bad token, then keyboard-interactive with an empty answer.
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	plain, _ := gossh.NewSignerFromKey(k)
	_, err = gossh.Dial("tcp", e.addr, &gossh.ClientConfig{User: "web+root", Auth: []gossh.AuthMethod{gossh.PublicKeys(plain), gossh.Password("x"),
		gossh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return []string{""}, nil })},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second})
	require.Error(t, err)
}

// ---------------------------------------------------------------------------------------
// Promise 7: bounds.

func TestAttackBoundsHeld(t *testing.T) {
	e := startWith(t, attackPolicies)
	c, err := e.dial(t, "web+root", e.token)
	require.NoError(t, err)
	defer c.Close()
	// A giant command (over the analysis bound, within SSH's packet size).
	_, errOut, code := execOn(t, c, "echo "+strings.Repeat("a", 200<<10), "")
	require.Equal(t, 126, code, errOut)
	// Deep nesting.
	_, errOut, code = execOn(t, c, strings.Repeat("$(", 5000)+"echo"+strings.Repeat(")", 5000), "")
	require.Equal(t, 126, code, errOut)
	_, errOut, code = execOn(t, c, "echo $(("+strings.Repeat("(", 20000)+"1"+strings.Repeat(")", 20000)+"))", "")
	require.Equal(t, 126, code, errOut)
	// Huge env and pty payloads.
	ch, reqs, err := c.OpenChannel("session", nil)
	require.NoError(t, err)
	go gossh.DiscardRequests(reqs)
	_, _ = ch.SendRequest("env", true, gossh.Marshal(struct{ N, V string }{strings.Repeat("N", 100<<10), strings.Repeat("V", 100<<10)}))
	_, _ = ch.SendRequest("pty-req", true, gossh.Marshal(struct {
		T          string
		C, R, W, H uint32
		M          string
	}{strings.Repeat("x", 200<<10), 1 << 31, 1 << 31, 0, 0, strings.Repeat("\xff", 10)}))
	_, _ = ch.SendRequest("pty-req", true, []byte{0, 0, 0})
	_, _ = ch.SendRequest("exec", true, []byte{0xff, 0xff, 0xff, 0xff})
	for i := 0; i < 200; i++ {
		_, _ = ch.SendRequest("window-change", false, []byte{1})
	}
	ch.Close()
	// Many channels opened and closed quickly.
	for i := 0; i < 50; i++ {
		ch, reqs, err := c.OpenChannel("session", nil)
		if err == nil {
			go gossh.DiscardRequests(reqs)
			ch.Close()
		}
	}
	// Still serving (the session itself may have ended: OpenSSH drops a connection whose
	// pty-req it cannot parse, and the gateway ends the session with its host).
	c2, err := e.dial(t, "web+root", e.token)
	require.NoError(t, err)
	defer c2.Close()
	require.Eventually(t, func() bool {
		out, _, code := execOn(t, c2, "echo alive", "")
		return code == 0 && out == "alive\n"
	}, 20*time.Second, 200*time.Millisecond)
}

// waitEnd waits for a shell to end, closing the connection if it does not.
func waitEnd(s *gossh.Session, c *gossh.Client) {
	done := make(chan struct{})
	go func() { _ = s.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
	}
	c.Close()
}

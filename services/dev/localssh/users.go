package localssh

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// validUser is a portable Unix user name, short enough for useradd and with no character
// that sudoers.d file names or chpasswd would treat specially.
var validUser = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// keyMarker starts the comment of the authorized_keys lines the fixture writes, followed by
// the fixture's directory: lines whose directory is gone are pruned.
const keyMarker = "gatehouse-localssh:"

// lockPath serialises account and authorized_keys changes across test processes (useradd
// and chpasswd fail rather than wait while another holds /etc/passwd). It is in /run, not
// $TMPDIR, so that every process finds the same file.
const lockPath = "/run/gatehouse-localssh.lock"

// minUID is Debian's UID_MIN: below it are system accounts, which AddUser leaves alone.
const minUID = 1000

// AddUser makes the local account name ready for tests, creating it if missing (home in
// /home, shell /bin/bash): its password is set to password (empty: none, key logins only)
// and the fixture's client key is authorised in ~/.ssh/authorized_keys. With sudo, the user
// may run anything through sudo after typing its password (a file in /etc/sudoers.d, never
// NOPASSWD); without, that file is removed. Accounts stay on the machine; calling again,
// from this or another fixture, brings the account to the state asked for. System accounts
// (uid below 1000) and root are refused; Start authorises root itself.
func (s *SSHD) AddUser(name, password string, sudo bool) error {
	if !validUser.MatchString(name) || name == "root" {
		return fmt.Errorf("add user %q: not a name the fixture manages", name)
	}
	if strings.ContainsAny(password, "\n\r") {
		return fmt.Errorf("add user %s: password with a line break", name)
	}
	if sudo && password == "" {
		return fmt.Errorf("add user %s: sudo asks for a password, and it has none", name)
	}
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	if u, err := user.Lookup(name); err == nil {
		if uid, _ := strconv.Atoi(u.Uid); uid < minUID {
			return fmt.Errorf("add user %s: a system account (uid %d), not one for tests", name, uid)
		}
	} else {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return fmt.Errorf("add user %s: %w", name, err)
		}
		if err := run(nil, "useradd", "-m", "-s", "/bin/bash", name); err != nil {
			return fmt.Errorf("add user %s: %w", name, err)
		}
	}
	if password != "" {
		err = run(strings.NewReader(name+":"+password+"\n"), "chpasswd")
	} else {
		// "*" matches no password but, unlike useradd's "!", does not lock the account,
		// which sshd without PAM would refuse even for a key.
		err = run(nil, "usermod", "-p", "*", name)
	}
	if err != nil {
		return fmt.Errorf("add user %s: set password: %w", name, err)
	}
	if err := s.authorizeLocked(name); err != nil {
		return fmt.Errorf("add user %s: %w", name, err)
	}
	if err := setSudo(name, sudo); err != nil {
		return fmt.Errorf("add user %s: %w", name, err)
	}
	return nil
}

func (s *SSHD) authorizeUser(name string) error {
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	return s.authorizeLocked(name)
}

// authorizeLocked puts the client key in name's ~/.ssh/authorized_keys, owned by the user
// with the modes sshd's StrictModes wants, keeping every line the fixture did not write.
func (s *SSHD) authorizeLocked(name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if u.HomeDir == "" || u.HomeDir == "/" {
		return fmt.Errorf("user %s has no home directory", name)
	}
	if _, err := os.Stat(u.HomeDir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(u.HomeDir, 0o750); err != nil {
			return err
		}
		if err := os.Chown(u.HomeDir, uid, gid); err != nil {
			return err
		}
	}
	sshDir := filepath.Join(u.HomeDir, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(sshDir, 0o700); err != nil {
		return err
	}
	if err := os.Chown(sshDir, uid, gid); err != nil {
		return err
	}
	path := filepath.Join(sshDir, "authorized_keys")
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(old))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, " "+keyMarker); i >= 0 {
			dir := line[i+1+len(keyMarker):]
			if _, err := os.Stat(dir); dir == s.Dir || err != nil {
				continue // ours (rewritten below) or its fixture is gone
			}
		}
		b.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.ClientSigner.PublicKey())))
	b.WriteString(key + " " + keyMarker + s.Dir + "\n")
	f, err := os.CreateTemp(sshDir, ".authorized_keys.tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if err := f.Chown(uid, gid); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// sudoersDir holds the sudo rules; file names with a dot are ignored by sudo, so the one
// being checked is invisible until renamed.
const sudoersDir = "/etc/sudoers.d"

func setSudo(name string, sudo bool) error {
	path := filepath.Join(sudoersDir, "gatehouse-localssh-"+name)
	if !sudo {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	visudo, err := exec.LookPath("visudo")
	if err != nil {
		if visudo, err = "/usr/sbin/visudo", nil; !isFile(visudo) {
			return fmt.Errorf("%w: sudo (deploy/install-deps.sh test, or apt-get install sudo)", ErrNotInstalled)
		}
	}
	rule := "# Written by Gatehouse's test fixture (services/dev/localssh); safe to delete.\n" +
		name + " ALL=(ALL:ALL) ALL\n"
	tmp := filepath.Join(sudoersDir, ".gatehouse-localssh-"+name+".tmp")
	if err := os.WriteFile(tmp, []byte(rule), 0o440); err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := run(nil, visudo, "-c", "-q", "-f", tmp); err != nil {
		return fmt.Errorf("check sudoers rule: %w", err)
	}
	return os.Rename(tmp, path)
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func lock() (unlock func(), err error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

func run(stdin *strings.Reader, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

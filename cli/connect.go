package cli

// `gatehouse connect RESOURCE [-- ARGS]`: ask the gateway how to reach a resource
// (GET /api/v1/connect/{resource}) and run the protocol's own client through the proxy
// with the person's token: psql (the token in PGPASSWORD, never in argv), kubectl (through
// a kubeconfig whose credential plugin is given the token in GATEHOUSE_TOKEN), ssh (with
// the certificate of `gatehouse ssh login`). --print prints the command instead, the
// token written as the variable that holds it.
//
// The gateway's answer builds a command line, so it is checked before use: the resource is
// the name the person typed, the host, port and account must be plain names (no leading
// '-', nothing a client could read as an option or a second parameter), ssh gets `--`
// before its destination, and psql verifies the proxy's certificate (sslmode=verify-full
// with the CA the gateway gives) or, without TLS, is run only to this machine.

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/app"
)

// The clients connect runs, by name on $PATH (tests point them at fakes).
var (
	psqlProgram    = "psql"
	kubectlProgram = "kubectl"
	sshProgram     = "ssh"
)

// clientCommand is a client to run: its arguments, and the variables added to its
// environment (the secret among them: secretVar names it, for --print).
type clientCommand struct {
	argv      []string
	env       []string
	secretVar string
}

func connectCmd(args []string, stdout, stderr io.Writer) error {
	// What follows -- goes to the client as it is, flags included.
	var extra []string
	for i, a := range args {
		if a == "--" {
			args, extra = args[:i], args[i+1:]
			break
		}
	}
	fs := newFlags("connect", stdout)
	server := fs.String("server", "", "Gatehouse HTTP address (default: the gateway you signed in to with gatehouse login)")
	printOnly := fs.Bool("print", false, "print the command instead of running it (the token written as $PGPASSWORD or $GATEHOUSE_TOKEN)")
	account := fs.String("user", "", "ssh: the account on the resource (default: your local user name)")
	sshDir := fs.String("ssh-dir", "~/.gatehouse/ssh", "ssh: the directory of gatehouse ssh login's key and certificate")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"connect needs one RESOURCE (see 'gatehouse connect --help'); the client's own arguments go after --"}
	}
	resource := pos[0]
	if !plainName(resource, false) {
		return usageError{fmt.Sprintf("%q is not a resource name (letters, digits, '-' and '_', not starting with '-')", resource)}
	}
	ctx, cancel := signalContext()
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}
	tok, base, err := sessionToken(ctx, hc, wantServer(*server), time.Now())
	if err != nil {
		return err
	}
	api := &apiClient{base: base, token: tok, http: hc}
	var info app.ConnectInfo
	if err := api.get(app.ConnectPath+url.PathEscape(resource), &info); err != nil {
		return fmt.Errorf("ask the gateway for resource %s: %w", resource, err)
	}
	if err := checkConnectInfo(resource, info); err != nil {
		return err
	}
	var cc clientCommand
	switch info.Protocol {
	case "postgres":
		name, _ := whoIs(tok)
		if cc, err = psqlCommand(info, resource, name, tok, extra); err != nil {
			return err
		}
	case "kubernetes":
		if cc, err = kubectlCommand(api, resource, tok, extra, stderr); err != nil {
			return err
		}
	case "ssh":
		if cc, err = sshCommand(info, resource, *account, *sshDir, extra); err != nil {
			return err
		}
	case "http":
		if u, err := url.Parse(info.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("the gateway answered resource %s with the URL %s, which is not http(s): refused", resource, printable(fmt.Sprintf("%q", info.URL)))
		}
		fmt.Fprintf(stdout, "curl -H \"Authorization: Bearer $(gatehouse token --cached)\" %s/\n", printable(shellQuote(info.URL)))
		return nil
	default:
		return fmt.Errorf("resource %s is of type %q, which gatehouse connect does not know", resource, info.Protocol)
	}
	if *printOnly {
		if cc.secretVar != "" {
			fmt.Fprintf(stderr, "# set %s first: export %s=\"$(gatehouse token --cached)\"\n", cc.secretVar, cc.secretVar)
		}
		fmt.Fprintln(stdout, cc.shell())
		return nil
	}
	return cc.run(stdout, stderr)
}

// checkConnectInfo refuses an answer that is not about the resource asked for, or whose
// host or port a client could read as something else (an option, a second parameter).
func checkConnectInfo(resource string, info app.ConnectInfo) error {
	bad := func(what, v string) error {
		return fmt.Errorf("the gateway's answer for resource %s has %s %s, which gatehouse connect does not use: refused (an old or misbehaving gateway, or someone between you and it)",
			resource, what, printable(fmt.Sprintf("%q", v)))
	}
	switch {
	case info.Resource != resource:
		return bad("the resource", info.Resource)
	case info.Protocol == "http" || info.Protocol == "kubernetes":
		return nil // no host on a command line: the URL (checked by its user) is what counts
	case !plainHost(info.Host):
		return bad("the host", info.Host)
	case info.Port <= 0 || info.Port > 65535:
		return bad("the port", strconv.Itoa(info.Port))
	case info.Database != "" && info.Database != resource:
		return bad("the database", info.Database)
	}
	return nil
}

// plainName says whether s is a name as resources and accounts are written: letters,
// digits, '-', '_' (and '.' when dots), not empty, not starting with '-'.
func plainName(s string, dots bool) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || dots && r == '.') {
			return false
		}
	}
	return true
}

// plainHost says whether s is an IP address or a DNS name (letters, digits, '-', '.'),
// not starting with '-'.
func plainHost(s string) bool {
	if net.ParseIP(s) != nil && !strings.Contains(s, "%") {
		return true
	}
	return len(s) <= 253 && plainName(s, true) && !strings.Contains(s, "_")
}

// psqlCommand runs psql against the PostgreSQL proxy: dbname picks the resource, user is
// recorded (as client_user) but not who the gateway takes the caller for: the token is.
// The token opens the gateway's API too, so psql sends it only over TLS it verifies
// (verify-full against the CA the gateway gives, kept under the config directory; without
// one, libpq's own: PGSSLROOTCERT or ~/.postgresql/root.crt), or in clear to this machine.
func psqlCommand(info app.ConnectInfo, resource, name, tok string, extra []string) (clientCommand, error) {
	conn := fmt.Sprintf("host=%s port=%d dbname=%s", libpqQuote(info.Host), info.Port, libpqQuote(resource))
	switch {
	case info.TLS && info.CAPEM != "":
		ca, err := writeProxyCA(resource, info.CAPEM)
		if err != nil {
			return clientCommand{}, err
		}
		conn += " sslmode=verify-full sslrootcert=" + libpqQuote(ca)
	case info.TLS:
		conn += " sslmode=verify-full"
	case isLoopbackHost(info.Host):
		conn += " sslmode=disable"
	default:
		return clientCommand{}, fmt.Errorf("the PostgreSQL proxy for %s (%s) does not speak TLS, and psql would send your token, which also opens the gateway's API, in clear to another machine: refused; ask the operator to set proxy.postgres.tls_cert_file",
			resource, net.JoinHostPort(info.Host, strconv.Itoa(info.Port)))
	}
	if name != "" {
		conn += " user=" + libpqQuote(name)
	}
	return clientCommand{argv: append([]string{psqlProgram, conn}, extra...), env: []string{"PGPASSWORD=" + tok}, secretVar: "PGPASSWORD"}, nil
}

// writeProxyCA keeps the PostgreSQL proxy's certificate (PEM, as the gateway gave it) at
// postgres/RESOURCE.crt under the config directory, for sslrootcert. Only certificates are
// kept; anything else is refused.
func writeProxyCA(resource, caPEM string) (string, error) {
	rest := []byte(caPEM)
	var certs []byte
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if _, err := x509.ParseCertificate(b.Bytes); b.Type != "CERTIFICATE" || err != nil {
			return "", fmt.Errorf("the gateway's certificate for resource %s is not a PEM certificate: refused", resource)
		}
		certs = append(certs, pem.EncodeToMemory(b)...)
	}
	if len(certs) == 0 {
		return "", fmt.Errorf("the gateway's certificate for resource %s is not a PEM certificate: refused", resource)
	}
	cache, err := loginCachePath()
	if err != nil {
		return "", err
	}
	path := filepath.Join(filepath.Dir(cache), "postgres", resource+".crt")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("keep the proxy's certificate: %w", err)
	}
	if err := writeFileAtomic(path, certs, 0o600); err != nil {
		return "", fmt.Errorf("keep the proxy's certificate: %w", err)
	}
	return path, nil
}

// libpqQuote quotes a connection string value unless it is plain (libpq's rules: any
// other character, a space of any kind among them, could end the value).
func libpqQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@/+") == "" {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// kubectlCommand writes the resource's kubeconfig (as `gatehouse kubeconfig` does) under
// the config directory and runs kubectl with it; the credential plugin reads the token
// from GATEHOUSE_TOKEN.
func kubectlCommand(api *apiClient, resource, tok string, extra []string, stderr io.Writer) (clientCommand, error) {
	var cl app.KubeCluster
	if err := api.get(app.KubeClustersPath+url.PathEscape(resource), &cl); err != nil {
		return clientCommand{}, fmt.Errorf("ask the gateway for kubernetes resource %s: %w", resource, err)
	}
	if cl.Resource != "" && cl.Resource != resource {
		return clientCommand{}, fmt.Errorf("the gateway answered for kubernetes resource %s with another, %s: refused", resource, printable(fmt.Sprintf("%q", cl.Resource)))
	}
	cl.Resource = resource // it names the kubeconfig's file
	// kubectl sends the token to the server: over TLS, or in clear to this machine only.
	if err := secureURL(cl.Server); err != nil {
		return clientCommand{}, fmt.Errorf("the gateway serves kubernetes resource %s at %s: %v: refused (kubectl would send your token there)", resource, printable(fmt.Sprintf("%q", cl.Server)), err)
	}
	self, err := os.Executable()
	if err != nil {
		return clientCommand{}, fmt.Errorf("the path of this gatehouse binary, for the credential plugin: %w", err)
	}
	b, err := kubeconfigYAML(cl, api.base, self)
	if err != nil {
		return clientCommand{}, err
	}
	cache, err := loginCachePath()
	if err != nil {
		return clientCommand{}, err
	}
	path := filepath.Join(filepath.Dir(cache), "kube", kubeName(cl.Resource)+".yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return clientCommand{}, err
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return clientCommand{}, err
	}
	fmt.Fprintf(stderr, "# kubeconfig for %s: %s\n", cl.Resource, path)
	return clientCommand{argv: append([]string{kubectlProgram, "--kubeconfig", path}, extra...), env: []string{"GATEHOUSE_TOKEN=" + tok},
		secretVar: "GATEHOUSE_TOKEN"}, nil
}

// sshCommand runs ssh to RESOURCE+ACCOUNT at the SSH proxy with the certificate of
// `gatehouse ssh login`, which it needs valid.
func sshCommand(info app.ConnectInfo, resource, account, dir string, extra []string) (clientCommand, error) {
	keyDir, err := expandHome(dir)
	if err != nil {
		return clientCommand{}, err
	}
	key, certPath, kh := filepath.Join(keyDir, "id_ed25519"), filepath.Join(keyDir, "id_ed25519-cert.pub"), filepath.Join(keyDir, "known_hosts")
	login := fmt.Sprintf("gatehouse ssh login --dir %s", dir)
	b, err := os.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) {
		return clientCommand{}, fmt.Errorf("no SSH certificate in %s: run %s first (connect does not get SSH certificates itself yet)", keyDir, login)
	}
	if err != nil {
		return clientCommand{}, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	cert, ok := pub.(*ssh.Certificate)
	if err != nil || !ok {
		return clientCommand{}, fmt.Errorf("%s is not an SSH certificate: run %s", certPath, login)
	}
	if cert.ValidBefore != ssh.CertTimeInfinity && time.Now().After(time.Unix(int64(cert.ValidBefore), 0)) {
		return clientCommand{}, fmt.Errorf("your SSH certificate expired: run %s", login)
	}
	if account == "" {
		u, err := user.Current()
		if err != nil {
			return clientCommand{}, usageError{"connect needs --user ACCOUNT for an ssh resource"}
		}
		account = u.Username
	}
	if !plainName(account, true) {
		return clientCommand{}, usageError{fmt.Sprintf("%s is not an account name ssh can be given (letters, digits, '.', '-' and '_', not starting with '-'): pass --user ACCOUNT",
			printable(fmt.Sprintf("%q", account)))}
	}
	// The person's ssh options go before --, the destination after it (ssh reads nothing
	// after -- as an option), then the remote command.
	opts, command := sshSplitArgs(extra)
	argv := []string{sshProgram, "-i", key, "-o", "CertificateFile=" + certPath, "-o", "UserKnownHostsFile=" + kh, "-o", "IdentitiesOnly=yes",
		"-p", strconv.Itoa(info.Port)}
	argv = append(append(argv, opts...), "--", resource+"+"+account+"@"+info.Host)
	return clientCommand{argv: append(argv, command...)}, nil
}

// sshOptionsWithValue are ssh's options that take a value (OpenSSH's getopt string).
const sshOptionsWithValue = "BbcDEeFIiJLlmOoPpQRSWw"

// sshSplitArgs splits what follows `connect RESOURCE --` for ssh as ssh itself reads the
// words after its destination: leading options (and their values) are options, the rest
// is the remote command. A -- of the person's own ends the options.
func sshSplitArgs(extra []string) (opts, command []string) {
	i := 0
	for i < len(extra) {
		a := extra[i]
		if a == "--" {
			return extra[:i], extra[i+1:]
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		i++
		for j := 1; j < len(a); j++ {
			if strings.IndexByte(sshOptionsWithValue, a[j]) >= 0 {
				if j == len(a)-1 && i < len(extra) {
					i++ // the value is the next word
				}
				break
			}
		}
	}
	return extra[:i], extra[i:]
}

// shell is the command as a shell line, the secret written as its variable.
func (cc clientCommand) shell() string {
	var words []string
	for _, e := range cc.env {
		k, _, _ := strings.Cut(e, "=")
		if k == cc.secretVar {
			words = append(words, k+`="$`+k+`"`)
		}
	}
	for _, a := range cc.argv {
		words = append(words, shellQuote(a))
	}
	return strings.Join(words, " ")
}

// shellQuote quotes a word for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+./:@,%^") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// run runs the client in the foreground; its environment is this one's plus cc.env. The
// client gets the terminal's signals itself (Ctrl-C cancels psql's query, not psql): this
// process, whose context catches them, waits.
func (cc clientCommand) run(stdout, stderr io.Writer) error {
	path, err := exec.LookPath(cc.argv[0])
	if err != nil {
		return fmt.Errorf("%s is not installed (or not on $PATH): install it, or use --print", cc.argv[0])
	}
	cmd := exec.Command(path, cc.argv[1:]...)
	cmd.Env = append(os.Environ(), cc.env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%s exited with status %d", filepath.Base(cc.argv[0]), ee.ExitCode())
	}
	return err
}

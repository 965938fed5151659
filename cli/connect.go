package cli

// `gatehouse connect RESOURCE [-- ARGS]`: ask the gateway how to reach a resource
// (GET /api/v1/connect/{resource}) and run the protocol's own client through the proxy
// with the person's token: psql (the token in PGPASSWORD, never in argv), kubectl (through
// a kubeconfig whose credential plugin is given the token in GATEHOUSE_TOKEN), ssh (with
// the certificate of `gatehouse ssh login`). --print prints the command instead, the
// token written as the variable that holds it.

import (
	"errors"
	"fmt"
	"io"
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
	var cc clientCommand
	switch info.Protocol {
	case "postgres":
		name, _ := whoIs(tok)
		cc = psqlCommand(info, name, tok, extra)
	case "kubernetes":
		if cc, err = kubectlCommand(api, info, tok, extra, stderr); err != nil {
			return err
		}
	case "ssh":
		if cc, err = sshCommand(info, *account, *sshDir, extra); err != nil {
			return err
		}
	case "http":
		fmt.Fprintf(stdout, "curl -H \"Authorization: Bearer $(gatehouse token --cached)\" %s/\n", shellQuote(info.URL))
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

// psqlCommand runs psql against the PostgreSQL proxy: dbname picks the resource, user is
// recorded (as client_user) but not who the gateway takes the caller for: the token is.
func psqlCommand(info app.ConnectInfo, name, tok string, extra []string) clientCommand {
	ssl := "disable"
	if info.TLS {
		ssl = "require"
	}
	conn := fmt.Sprintf("host=%s port=%d dbname=%s sslmode=%s", libpqQuote(info.Host), info.Port, libpqQuote(info.Database), ssl)
	if name != "" {
		conn += " user=" + libpqQuote(name)
	}
	return clientCommand{argv: append([]string{psqlProgram, conn}, extra...), env: []string{"PGPASSWORD=" + tok}, secretVar: "PGPASSWORD"}
}

// libpqQuote quotes a connection string value when it needs it (libpq's rules).
func libpqQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " '\\\t\n") {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// kubectlCommand writes the resource's kubeconfig (as `gatehouse kubeconfig` does) under
// the config directory and runs kubectl with it; the credential plugin reads the token
// from GATEHOUSE_TOKEN.
func kubectlCommand(api *apiClient, info app.ConnectInfo, tok string, extra []string, stderr io.Writer) (clientCommand, error) {
	var cl app.KubeCluster
	if err := api.get(app.KubeClustersPath+url.PathEscape(info.Resource), &cl); err != nil {
		return clientCommand{}, fmt.Errorf("ask the gateway for kubernetes resource %s: %w", info.Resource, err)
	}
	if cl.Resource == "" {
		cl.Resource = info.Resource
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
func sshCommand(info app.ConnectInfo, account, dir string, extra []string) (clientCommand, error) {
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
	argv := []string{sshProgram, "-i", key, "-o", "CertificateFile=" + certPath, "-o", "UserKnownHostsFile=" + kh, "-o", "IdentitiesOnly=yes",
		"-p", strconv.Itoa(info.Port), info.Resource + "+" + account + "@" + info.Host}
	return clientCommand{argv: append(argv, extra...)}, nil
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

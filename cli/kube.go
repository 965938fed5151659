package cli

// kubectl through Gatehouse: `gatehouse kubeconfig` writes a kubeconfig whose cluster is
// the gateway's HTTP proxy (its address and the resource's path prefix, its certificate as
// the CA) and whose user is `gatehouse kube credential`, a client-go exec credential
// plugin that hands kubectl the caller's token: $GATEHOUSE_TOKEN, else a cached token with
// more than a minute left, else a new sign-in (as `gatehouse ssh login` signs in), cached.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/sshca"
)

// execCredentialVersion is the client.authentication.k8s.io version the plugin speaks.
const execCredentialVersion = "client.authentication.k8s.io/v1"

// tokenMinLife is how long a cached token must still be valid to be handed out again.
const tokenMinLife = time.Minute

// execCredential is client-go's ExecCredential (k8s.io/client-go/pkg/apis/clientauthentication/v1).
type execCredential struct {
	APIVersion string                `json:"apiVersion"`
	Kind       string                `json:"kind"`
	Spec       *execCredentialSpec   `json:"spec,omitempty"`
	Status     *execCredentialStatus `json:"status,omitempty"`
}

// execCredentialSpec is what client-go tells the plugin in KUBERNETES_EXEC_INFO.
type execCredentialSpec struct {
	Interactive bool `json:"interactive"`
}

type execCredentialStatus struct {
	Token               string `json:"token"`
	ExpirationTimestamp string `json:"expirationTimestamp,omitempty"`
}

// kubeSession is how the kube commands reach the gateway and get a token.
type kubeSession struct {
	base      string // the API's base URL
	resource  string
	noBrowser bool
	hc        *http.Client
	stderr    io.Writer
	now       func() time.Time
	// signIn signs in at the issuer li names (cli/ssh.go's signIn; tests replace it).
	signIn func(ctx context.Context, hc *http.Client, li sshca.LoginInfo, browser bool, stderr io.Writer) (string, error)
}

func newKubeSession(base, resource string, noBrowser bool, stderr io.Writer) *kubeSession {
	base = strings.TrimRight(base, "/")
	if base == "" {
		base = apiURL()
	}
	return &kubeSession{base: base, resource: resource, noBrowser: noBrowser, hc: &http.Client{Timeout: 30 * time.Second},
		stderr: stderr, now: time.Now, signIn: signIn}
}

func kubeCmd(args []string, stdout, stderr io.Writer) error {
	// Main has checked that args[0] is a subcommand of the table; credential is the only one.
	return kubeCredentialCmd(args[1:], stdout, stderr)
}

func kubeCredentialCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("kube credential", stdout)
	resource := fs.String("resource", "", "the kubernetes resource kubectl calls (names the credential in messages)")
	base := fs.String("url", "", "Gatehouse HTTP address (default: $GATEHOUSE_URL, else http://127.0.0.1:8080)")
	noBrowser := fs.Bool("no-browser", false, "do not open a browser for an issuer without the device flow: only print the sign-in URL (the device flow never opens one)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *resource == "" {
		return usageError{"kube credential needs --resource NAME"}
	}
	interactive, err := execInteractive(os.Getenv("KUBERNETES_EXEC_INFO"))
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	k := newKubeSession(*base, *resource, *noBrowser, stderr)
	tok, err := k.token(ctx, interactive)
	if err != nil {
		return err
	}
	return writeExecCredential(stdout, tok)
}

// execInteractive reads KUBERNETES_EXEC_INFO for whether the plugin may ask the person
// something (client-go sets it; run by hand, without it, the plugin may).
func execInteractive(info string) (bool, error) {
	if strings.TrimSpace(info) == "" {
		return true, nil
	}
	var ec execCredential
	if err := json.Unmarshal([]byte(info), &ec); err != nil {
		return false, fmt.Errorf("KUBERNETES_EXEC_INFO is not an ExecCredential: %w", err)
	}
	return ec.Spec != nil && ec.Spec.Interactive, nil
}

// writeExecCredential prints the ExecCredential of tok, its expiry the token's exp.
func writeExecCredential(w io.Writer, tok string) error {
	st := &execCredentialStatus{Token: tok}
	if exp, ok := tokenExpiry(tok); ok {
		st.ExpirationTimestamp = exp.UTC().Format(time.RFC3339)
	}
	b, err := json.Marshal(execCredential{APIVersion: execCredentialVersion, Kind: "ExecCredential", Status: st})
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// tokenExpiry reads a JWT's exp claim without verifying the token (the gateway does).
func tokenExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if json.Unmarshal(b, &claims) != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	f, err := claims.Exp.Float64()
	if err != nil || f <= 0 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// token is the caller's token: $GATEHOUSE_TOKEN, else the cached one while it has more
// than tokenMinLife left, else a new sign-in (only when interactive), cached.
func (k *kubeSession) token(ctx context.Context, interactive bool) (string, error) {
	if tok := strings.TrimSpace(os.Getenv("GATEHOUSE_TOKEN")); tok != "" {
		if err := looksLikeToken(tok); err != nil {
			return "", usageError{fmt.Sprintf("GATEHOUSE_TOKEN is not a token: %v", err)}
		}
		return tok, nil
	}
	path, err := tokenCachePath(k.base)
	if err != nil {
		return "", err
	}
	if tok, ok := readCachedToken(path, k.base, k.now()); ok {
		return tok, nil
	}
	if !interactive {
		return "", fmt.Errorf("no Gatehouse token for %s, and kubectl runs this without a terminal to sign in at: run `gatehouse kube credential --resource %s --url %s` once in a terminal (or set GATEHOUSE_TOKEN)",
			k.base, k.resource, k.base)
	}
	li, err := k.loginInfo(ctx)
	if err != nil {
		return "", err
	}
	tok, err := k.signIn(ctx, k.hc, li, !k.noBrowser, k.stderr)
	if err != nil {
		return "", err
	}
	if err := writeCachedToken(path, cachedToken{API: k.base, Issuer: li.Issuer, Token: tok}); err != nil {
		fmt.Fprintf(k.stderr, "warning: the token is not cached (%v); you will be asked to sign in again\n", err)
	}
	return tok, nil
}

// loginInfo asks the gateway where to sign in (GET /api/v1/login; the Kubernetes API's or
// the SSH CA's answer from gateways without it).
func (k *kubeSession) loginInfo(ctx context.Context) (sshca.LoginInfo, error) {
	var li sshca.LoginInfo
	var first error
	// Any process that checks tokens answers the first; older gateways, the others.
	for _, p := range []string{app.LoginPath, app.KubeLoginPath, sshca.LoginPath} {
		err := getJSON(ctx, k.hc, k.base+p, &li)
		if err == nil {
			return li, nil
		}
		if first == nil {
			first = err
		}
	}
	return li, fmt.Errorf("ask the gateway where to sign in: %w", first)
}

// cachedToken is a token cache file: the gateway it is for, the issuer it came from, the
// token.
type cachedToken struct {
	API    string `json:"api"`
	Issuer string `json:"issuer"`
	Token  string `json:"token"`
}

// tokenCachePath is the cache file of a gateway's token: under the user's cache directory
// ($XDG_CACHE_HOME, else ~/.cache), gatehouse/tokens/<hash of the gateway's URL>.json. It
// is keyed by the gateway, not the issuer, so that kubectl's calls need no round trip to
// learn the issuer before a cached token is found.
func tokenCachePath(base string) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("token cache: %w", err)
	}
	sum := sha256.Sum256([]byte(base))
	return filepath.Join(dir, "gatehouse", "tokens", hex.EncodeToString(sum[:12])+".json"), nil
}

// readCachedToken returns the cached token for base when it has more than tokenMinLife
// left at now.
func readCachedToken(path, base string, now time.Time) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	var c cachedToken
	if json.Unmarshal(b, &c) != nil || c.API != base || looksLikeToken(c.Token) != nil {
		return "", false
	}
	exp, ok := tokenExpiry(c.Token)
	if !ok || exp.Sub(now) <= tokenMinLife {
		return "", false
	}
	return c.Token, true
}

// writeCachedToken writes the cache file atomically, readable by its owner only.
func writeCachedToken(path string, c cachedToken) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b, 0o600)
}

func kubeconfigCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("kubeconfig", stdout)
	resource := fs.String("resource", "", "the kubernetes resource to reach")
	out := fs.String("out", "", "write the kubeconfig to `FILE` (mode 0600, replaced whole) instead of stdout")
	base := fs.String("url", "", "Gatehouse HTTP address (default: $GATEHOUSE_URL, else http://127.0.0.1:8080); the credential plugin is given it too")
	noBrowser := fs.Bool("no-browser", false, "do not open a browser for an issuer without the device flow: only print the sign-in URL (the device flow never opens one)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *resource == "" {
		return usageError{"kubeconfig needs --resource NAME"}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("the path of this gatehouse binary, for the credential plugin: %w", err)
	}
	if self, err = filepath.Abs(self); err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	k := newKubeSession(*base, *resource, *noBrowser, stderr)
	tok, err := k.token(ctx, true)
	if err != nil {
		return err
	}
	var cl app.KubeCluster
	api := &apiClient{base: k.base, token: tok, http: k.hc}
	if err := api.get(app.KubeClustersPath+url.PathEscape(*resource), &cl); err != nil {
		return fmt.Errorf("ask the gateway for resource %s: %w", *resource, err)
	}
	if u, err := url.Parse(cl.Server); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("the gateway answered resource %s with server %q, not an http(s) URL", *resource, cl.Server)
	}
	if cl.Resource == "" {
		cl.Resource = *resource
	}
	b, err := kubeconfigYAML(cl, k.base, self)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err := stdout.Write(b)
		return err
	}
	if err := writeFileAtomic(*out, b, 0o600); err != nil {
		return err
	}
	name := kubeName(cl.Resource)
	fmt.Fprintf(stderr, "Wrote %s: context %s, server %s.\nUse it: KUBECONFIG=%s kubectl get pods (kubectl runs `gatehouse kube credential` for the token)\n",
		*out, name, cl.Server, *out)
	return nil
}

// kubeName names the cluster, user and context of a resource in a kubeconfig.
func kubeName(resource string) string { return "gatehouse-" + resource }

// kubeconfigYAML is the kubeconfig of a cluster: its server and CA, and a user whose
// token comes from `self kube credential --resource R --url base`.
func kubeconfigYAML(cl app.KubeCluster, base, self string) ([]byte, error) {
	type namedCluster struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server string `yaml:"server"`
			CAData string `yaml:"certificate-authority-data,omitempty"`
		} `yaml:"cluster"`
	}
	type execConfig struct {
		APIVersion         string   `yaml:"apiVersion"`
		Command            string   `yaml:"command"`
		Args               []string `yaml:"args"`
		InteractiveMode    string   `yaml:"interactiveMode"`
		ProvideClusterInfo bool     `yaml:"provideClusterInfo"`
	}
	type namedUser struct {
		Name string `yaml:"name"`
		User struct {
			Exec execConfig `yaml:"exec"`
		} `yaml:"user"`
	}
	type namedContext struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	}
	var doc struct {
		APIVersion     string         `yaml:"apiVersion"`
		Kind           string         `yaml:"kind"`
		Clusters       []namedCluster `yaml:"clusters"`
		Users          []namedUser    `yaml:"users"`
		Contexts       []namedContext `yaml:"contexts"`
		CurrentContext string         `yaml:"current-context"`
	}
	name := kubeName(cl.Resource)
	doc.APIVersion, doc.Kind, doc.CurrentContext = "v1", "Config", name
	c := namedCluster{Name: name}
	c.Cluster.Server = cl.Server
	if cl.CAPEM != "" {
		c.Cluster.CAData = base64.StdEncoding.EncodeToString([]byte(cl.CAPEM))
	}
	u := namedUser{Name: name}
	u.User.Exec = execConfig{APIVersion: execCredentialVersion, Command: self,
		Args: []string{"kube", "credential", "--resource", cl.Resource, "--url", base}, InteractiveMode: "IfAvailable"}
	x := namedContext{Name: name}
	x.Context.Cluster, x.Context.User = name, name
	doc.Clusters, doc.Users, doc.Contexts = []namedCluster{c}, []namedUser{u}, []namedContext{x}
	var buf bytes.Buffer
	buf.WriteString("# Gatehouse: kubectl reaches " + cl.Resource + " through the gateway; `gatehouse kube credential` gives it the token.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

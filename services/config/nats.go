package config

import (
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/embedded"
)

// NATS says where the bus is and how to reach it. No URL means: run NATS embedded in this
// process (one node, no users, no TLS: a trial, not production).
type NATS struct {
	// URL is the server to connect to; several servers of a cluster go comma-separated
	// ("nats://n1:4222,nats://n2:4222") or in URLs. The client connects to any and moves to
	// another when it fails.
	URL  string   `yaml:"url"`
	URLs []string `yaml:"urls"`
	// EmbeddedListen is the client address of the embedded server (port 0 = any free port).
	EmbeddedListen string `yaml:"embedded_listen"`
	// ServerConfig is a nats-server configuration file (as `gatehouse nats config` and
	// deploy/nats/nats-server.conf make): with it, the embedded server is the node that
	// file describes — its listen address, cluster routes, JetStream store, users and TLS —
	// instead of a single node on embedded_listen. `gatehouse run --target=nats` then runs
	// one node of a NATS cluster. Not with url: a process either runs a node or connects to
	// one.
	ServerConfig string `yaml:"server_config"`
	// StreamMaxBytes bounds GH_AUDIT (limits-based retention).
	StreamMaxBytes int64 `yaml:"stream_max_bytes"`
	// DuplicateWindow is JetStream's deduplication window for re-published events (default
	// 2m, NATS's own). The server keeps every message ID of the window in memory, so its
	// size is the publish rate times the window; a copy stored after it is harmless (the
	// audit store keeps one event per ID).
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// Replicas is how many copies of every stream and KV bucket the cluster keeps: 1, or 3
	// (survives the loss of any one node). 3 needs a cluster, never the embedded server.
	Replicas int `yaml:"replicas"`
	// Streams is create (default: every component creates and updates the streams and
	// buckets it uses) or bind (it only binds to them; `gatehouse nats provision` made
	// them): with least-privilege credentials, components bind.
	Streams string `yaml:"streams"`

	// Authentication: at most one of a credentials file (JWT + nkey seed, as nsc writes
	// it), an nkey seed file, or a user with a password file.
	CredentialsFile string `yaml:"credentials_file"`
	NKeyFile        string `yaml:"nkey_file"`
	User            string `yaml:"user"`
	// PasswordFile holds the user's password (never the config file itself, never logged).
	PasswordFile string `yaml:"password_file"`
	// InboxPrefix is the subject prefix of this component's reply inboxes; with
	// least-privilege permissions each component may read only its own
	// (`gatehouse nats config` prints it per component: _INBOX.<target>).
	InboxPrefix string  `yaml:"inbox_prefix"`
	TLS         NATSTLS `yaml:"tls"`
}

// NATSTLS is TLS to NATS: on when required or any file is set, and then every URL must
// say tls://.
type NATSTLS struct {
	// Required turns TLS on with the system's roots when no CA file is given.
	Required bool `yaml:"required"`
	// CAFile is the PEM CA that signed the servers' certificates.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are this component's client certificate, for mutual TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// NATS streams modes.
const (
	StreamsCreate = "create"
	StreamsBind   = "bind"
)

func (n *NATS) applyDefaults() {
	def(&n.EmbeddedListen, "127.0.0.1:0")
	def(&n.StreamMaxBytes, 8<<30)
	def(&n.DuplicateWindow, 2*time.Minute)
	def(&n.Replicas, 1)
	def(&n.Streams, StreamsCreate)
}

// Servers lists the configured server URLs (none: embedded).
func (n *NATS) Servers() []string {
	var out []string
	for _, u := range append(strings.Split(n.URL, ","), n.URLs...) {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// ServerURL is Servers as the one comma-separated string nats.Connect takes.
func (n *NATS) ServerURL() string { return strings.Join(n.Servers(), ",") }

// Security is the section's authentication and TLS, for bus.Connect.
func (n *NATS) Security() bus.Security {
	return bus.Security{CredentialsFile: n.CredentialsFile, NKeyFile: n.NKeyFile, User: n.User, PasswordFile: n.PasswordFile,
		InboxPrefix: n.InboxPrefix, TLS: bus.TLS{Required: n.TLS.Required, CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile}}
}

// validateServerConfig checks the nats-server configuration file a node is started from:
// it parses, it enables JetStream with a store of its own, and replicas: 3 has a cluster.
// The components of this process reach the node in-process: credentials the file's
// users require go in this section as usual; TLS does not apply in-process.
func (n *NATS) validateServerConfig(path string, ck *checker) {
	info, err := embedded.CheckFile(n.ServerConfig)
	if err != nil {
		ck.add(path+".server_config", "%s: %v", n.ServerConfig, err)
		return
	}
	if !info.JetStream {
		ck.add(path+".server_config", "%s does not enable JetStream (jetstream { store_dir: ... }): every Gatehouse stream and bucket lives there", n.ServerConfig)
	} else if info.StoreDir == "" {
		ck.add(path+".server_config", "%s: jetstream has no store_dir: the node would keep the audit trail in a temporary directory", n.ServerConfig)
	}
	if n.Replicas > 1 && !info.Cluster {
		ck.add(path+".replicas", "%d needs a NATS cluster: %s has no cluster block (one node)", n.Replicas, n.ServerConfig)
	}
	if n.TLS != (NATSTLS{}) {
		ck.add(path+".tls", "with server_config this process's components reach their node in-process, without TLS: leave nats.tls to the processes that connect over the network")
	}
	if n.InboxPrefix != "" && (strings.ContainsAny(n.InboxPrefix, "*> \t") || strings.HasSuffix(n.InboxPrefix, ".")) {
		ck.add(path+".inbox_prefix", "%q is not a subject prefix (no wildcards, spaces or trailing dot)", n.InboxPrefix)
	}
	if _, err := n.Security().Options(); err != nil {
		ck.add(path, "%v", err)
	}
}

func (n *NATS) validate(path string, ck *checker) {
	servers := n.Servers()
	if n.URL != "" && len(n.URLs) > 0 {
		ck.add(path+".urls", "set url or urls, not both")
	}
	if n.Replicas != 1 && n.Replicas != 3 {
		ck.add(path+".replicas", "%d: must be 1 or 3 (a JetStream stream replicated to an even number of nodes survives no more failures than one node fewer)", n.Replicas)
	}
	ck.oneOf(path+".streams", n.Streams, StreamsCreate, StreamsBind)
	if n.ServerConfig != "" {
		if len(servers) > 0 {
			ck.add(path+".server_config", "runs a NATS node in this process, and nats.url names servers to connect to: set one of them (a cluster node's own process has no url; the components' processes have no server_config)")
			return
		}
		n.validateServerConfig(path, ck)
		return
	}
	if len(servers) == 0 {
		ck.hostPort(path+".embedded_listen", n.EmbeddedListen)
		if n.Replicas > 1 {
			ck.add(path+".replicas", "%d needs a NATS cluster (nats.url): the embedded server is one node", n.Replicas)
		}
		if !n.Security().Empty() {
			ck.add(path, "credentials, TLS and inbox_prefix are for a NATS server at nats.url: the embedded server has no users and no TLS")
		}
		if n.Streams == StreamsBind {
			ck.add(path+".streams", "bind needs a NATS server at nats.url that `gatehouse nats provision` prepared; the embedded server is this process's own")
		}
		return
	}
	for _, s := range servers {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || !strings.Contains(s, "://") {
			ck.add(path+".url", "%q is not a URL (nats://host:port, or tls://host:port)", s)
			continue
		}
		if u.User != nil {
			ck.add(path+".url", "%q carries credentials: use user and password_file (or nkey_file, credentials_file), which are never logged", u.Redacted())
		}
		switch u.Scheme {
		case "nats":
			if n.TLS != (NATSTLS{}) {
				ck.add(path+".url", "%q is nats:// but nats.tls is set: write tls://%s, so that the URL says the connection is TLS", s, u.Host)
			}
		case "tls":
			if n.TLS == (NATSTLS{}) {
				ck.add(path+".tls", "%q is tls:// but nats.tls is not set: give ca_file (or required: true for the system's roots)", s)
			}
		default:
			ck.add(path+".url", "%q: scheme %s is not nats or tls", s, u.Scheme)
		}
	}
	if n.InboxPrefix != "" && (strings.ContainsAny(n.InboxPrefix, "*> \t") || strings.HasSuffix(n.InboxPrefix, ".")) {
		ck.add(path+".inbox_prefix", "%q is not a subject prefix (no wildcards, spaces or trailing dot)", n.InboxPrefix)
	}
	// Load every file now, so that a missing or unreadable one stops the start with its
	// field (the error names the setting and the file; never a secret).
	if _, err := n.Security().Options(); err != nil {
		ck.add(path, "%v", err)
	}
}

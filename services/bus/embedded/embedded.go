// Package embedded runs a NATS server with JetStream inside the Gatehouse process. It is the
// only package that imports nats-server; everything else links nats.go alone.
package embedded

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a running embedded NATS server.
type Server struct {
	ns *server.Server
}

// Start starts NATS with JetStream storing under storeDir, listening on listen (host:port,
// port 0 for any free port), and waits until it accepts connections.
func Start(listen, storeDir string) (*Server, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "gatehouse-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		NoLog:      true,
		// Audit events can be large (result chunks); allow up to 8 MiB messages.
		MaxPayload: 8 << 20,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 30s (store %s)", storeDir)
	}
	return &Server{ns: ns}, nil
}

// StartFile starts NATS from a nats-server configuration file (as `nats-server -c` would:
// users and permissions, TLS, cluster routes, JetStream) and waits until it accepts
// connections. Tests run real clusters and authorization with it.
func StartFile(conf string) (*Server, error) { return startFile(conf, false) }

// StartNode is StartFile for a node an operator runs (`gatehouse run --target=nats` with
// nats.server_config): it logs as nats-server does with that file (to stderr unless the
// file says log_file; debug and trace as it says).
func StartNode(conf string) (*Server, error) { return startFile(conf, true) }

func startFile(conf string, logs bool) (*Server, error) {
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		return nil, fmt.Errorf("nats config %s: %w", conf, err)
	}
	opts.NoSigs, opts.NoLog = true, !logs
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", conf, err)
	}
	if logs {
		ns.ConfigureLogger()
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("nats %s: not ready after 30s", conf)
	}
	return &Server{ns: ns}, nil
}

// FileInfo is what a nats-server configuration file sets that Gatehouse checks before it
// starts a node from it.
type FileInfo struct {
	JetStream bool   // jetstream is enabled
	StoreDir  string // where JetStream keeps its streams ("" : a temporary directory)
	Cluster   bool   // the node is one of a cluster (cluster { ... } with a port)
}

// CheckFile parses a nats-server configuration file as StartFile would, without starting
// anything.
func CheckFile(conf string) (FileInfo, error) {
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		return FileInfo{}, err
	}
	return FileInfo{JetStream: opts.JetStream, StoreDir: opts.StoreDir, Cluster: opts.Cluster.Port != 0}, nil
}

// Name is the server's name.
func (s *Server) Name() string { return s.ns.Name() }

// JetStreamReady reports whether the server's JetStream is enabled and, in a cluster,
// has a meta leader.
func (s *Server) JetStreamReady() bool {
	return s.ns.JetStreamEnabled() && (!s.ns.JetStreamIsClustered() || s.ns.JetStreamIsCurrent())
}

// URL is the client URL of the server.
func (s *Server) URL() string { return s.ns.ClientURL() }

// InProcessConn is a client connection that does not go through the network stack: the
// process's own components talk to its embedded server through it (nats.InProcessServer).
func (s *Server) InProcessConn() (net.Conn, error) { return s.ns.InProcessConn() }

// Shutdown stops the server and waits until it is down.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

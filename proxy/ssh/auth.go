package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/services/sshcert"
)

// How a caller names what it wants: the SSH user name is RESOURCE+LOGIN (or RESOURCE
// alone, for the resource's first login). `ssh web-1+deploy@gateway`.
const loginSeparator = "+"

// maxAuthTries bounds the authentication attempts of one connection (OpenSSH offers its
// keys first, then asks for the token).
const maxAuthTries = 10

// openSSHPasswordMax is what OpenSSH's ssh passes of a typed or askpass password at most
// (its buffer is 1024 bytes): a longer token arrives cut to this length.
const openSSHPasswordMax = 1023

// target is what a user name asks for.
type target struct {
	resource *config.Resource
	login    string
}

// parseUser resolves a user name to a resource of this proxy and a login it allows.
func (s *Server) parseUser(user string) (*target, error) {
	name, login, _ := strings.Cut(user, loginSeparator)
	res, err := s.auth.Resource(name, "ssh")
	if err != nil || res.SSH == nil {
		return nil, fmt.Errorf("%q is not an SSH resource on this gateway: connect as RESOURCE+LOGIN@gateway (e.g. web-1+deploy)", name)
	}
	if login == "" {
		login = res.SSH.Logins[0]
	} else if !slices.Contains(res.SSH.Logins, login) {
		return nil, fmt.Errorf("resource %s has no login %q on this gateway (its logins: %s)", res.Name, login, strings.Join(res.SSH.Logins, ", "))
	}
	return &target{resource: res, login: login}, nil
}

// authState is what authentication learns of one connection; the callbacks of its
// handshake run one at a time.
type authState struct {
	target   *target
	identity *identity.Identity
	method   string // token or certificate
	upstream *upstream
	failures int
}

// refusal is an authentication failure: what the client is told (as a banner: OpenSSH
// prints it) and the check that failed, for the auth.failed event, recorded as the
// attempt's caller (who, nil when the attempt proved no identity).
func (s *Server) refusal(ctx context.Context, meta ssh.ConnMetadata, st *authState, who *identity.Identity, check, msg string) error {
	st.failures++
	s.authFailed(ctx, meta, who, check, msg)
	return &ssh.BannerError{Err: errors.New(check + ": " + msg), Message: "gatehouse: " + msg + "\n"}
}

// serverConfig is the handshake's configuration for one connection, its callbacks filling st.
func (s *Server) serverConfig(ctx context.Context, st *authState) *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		Config:        ssh.Config{Ciphers: s.cfg.Ciphers},
		MaxAuthTries:  maxAuthTries,
		ServerVersion: "SSH-2.0-Gatehouse",
		PasswordCallback: func(meta ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
			return s.tokenAuth(ctx, meta, st, string(password))
		},
		KeyboardInteractiveCallback: func(meta ssh.ConnMetadata, client ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			if _, err := s.parseUser(meta.User()); err != nil {
				return nil, s.refusal(ctx, meta, st, nil, "resource", err.Error())
			}
			answers, err := client("", "Gatehouse: send your OIDC access token.", []string{"Token: "}, []bool{false})
			if err != nil {
				return nil, err
			}
			if len(answers) != 1 {
				return nil, s.refusal(ctx, meta, st, nil, identity.CheckFormat, "expected one answer: the token")
			}
			return s.tokenAuth(ctx, meta, st, answers[0])
		},
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			// Plain keys are offered by every OpenSSH client before it asks for a password:
			// refused quietly. Only certificates of the gateway's CA are looked at.
			if _, ok := key.(*ssh.Certificate); !ok {
				return nil, errors.New("plain keys are not accepted: use your token or `gatehouse ssh login`")
			}
			if _, _, err := sshcert.Verify(s.cfg.UserCAs, key, time.Now()); err != nil {
				return nil, s.refusal(ctx, meta, st, nil, "certificate", "certificate refused: "+err.Error())
			}
			return &ssh.Permissions{}, nil
		},
		// Only once the client has proved it holds the certificate's key.
		VerifiedPublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey, _ *ssh.Permissions, _ string) (*ssh.Permissions, error) {
			id, until, err := sshcert.Verify(s.cfg.UserCAs, key, time.Now())
			if err != nil {
				return nil, s.refusal(ctx, meta, st, nil, "certificate", "certificate refused: "+err.Error())
			}
			who := &identity.Identity{Identity: id, Expiry: until}
			if err := s.auth.Live.Admit(id); err != nil {
				return nil, s.refusal(ctx, meta, st, who, "revoked", err.Error())
			}
			return s.admit(ctx, meta, st, who, "certificate")
		},
	}
	for _, k := range s.cfg.HostKeys {
		cfg.AddHostKey(k)
	}
	return cfg
}

// tokenAuth admits a caller by its OIDC token.
func (s *Server) tokenAuth(ctx context.Context, meta ssh.ConnMetadata, st *authState, token string) (*ssh.Permissions, error) {
	if _, err := s.parseUser(meta.User()); err != nil {
		return nil, s.refusal(ctx, meta, st, nil, "resource", err.Error())
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, s.refusal(ctx, meta, st, nil, identity.CheckFormat, "send an OIDC access token as the password")
	}
	id, err := s.auth.Authenticate(ctx, token)
	if err != nil {
		var ae *session.AuthError
		msg, check := "token rejected: "+err.Error(), "token"
		var who *identity.Identity
		if errors.As(err, &ae) {
			msg, check = ae.Msg, ae.Check
			if ae.Class == "revoked" {
				who = id
			}
		}
		if len(token) == openSSHPasswordMax {
			msg += fmt.Sprintf(" (the token arrived with exactly %d bytes, the most OpenSSH passes as a password: a longer token is cut; use `gatehouse ssh login`, which needs no password)", openSSHPasswordMax)
		}
		return nil, s.refusal(ctx, meta, st, who, check, msg)
	}
	return s.admit(ctx, meta, st, id, "token")
}

// admit finishes a successful authentication: the target is resolved again (the user name
// is the client's), and the gateway logs in to the host, so that a host it cannot reach
// refuses the connection with the reason rather than accepting it to fail later.
func (s *Server) admit(ctx context.Context, meta ssh.ConnMetadata, st *authState, id *identity.Identity, method string) (*ssh.Permissions, error) {
	t, err := s.parseUser(meta.User())
	if err != nil {
		return nil, s.refusal(ctx, meta, st, nil, "resource", err.Error())
	}
	up, err := dialUpstream(ctx, t)
	if err != nil {
		return nil, s.refusal(ctx, meta, st, id, "backend", fmt.Sprintf("cannot connect to resource %s as %s: %v", t.resource.Name, t.login, err))
	}
	st.target, st.identity, st.method, st.upstream = t, id, method, up
	return &ssh.Permissions{}, nil
}

// authFailed records a refused attempt as auth.failed (a session of one event).
func (s *Server) authFailed(ctx context.Context, meta ssh.ConnMetadata, who *identity.Identity, check, msg string) {
	id := &identity.Identity{}
	if who != nil {
		id = who
	}
	res := &config.Resource{Name: "_unknown", Audit: "buffered"}
	name, _, _ := strings.Cut(meta.User(), loginSeparator)
	if r, err := s.auth.Resource(name, "ssh"); err == nil {
		res = r
	}
	outcome := "auth"
	if check == "backend" {
		outcome = "backend"
	}
	s.connections.WithLabelValues(outcome).Inc()
	s.log.Info("authentication refused", "client", meta.RemoteAddr().String(), "user", meta.User(), "check", check, "reason", msg)
	sess := session.New(id, res, s.pub, s.decider, s.cfg.Limits)
	_ = sess.Emit(ctx, &schemas.AuthFailed{Protocol: "ssh", ClientAddr: meta.RemoteAddr().String(),
		ClientUser: meta.User(), Database: res.Name, Check: check, Message: msg})
}

// errHostKey is a host whose key is not the pinned one (nor signed by the pinned CA).
var errHostKey = errors.New("the host's key is not the one pinned for this resource")

// upstream is the gateway's connection to the host.
type upstream struct {
	conn  ssh.Conn
	chans <-chan ssh.NewChannel
	reqs  <-chan *ssh.Request
}

// dialUpstream logs in to the host as t.login with the resource's key (read now: a rotated
// key is used from the next connection), checking the host's key.
func dialUpstream(ctx context.Context, t *target) (*upstream, error) {
	b := t.resource.SSH
	signer, err := b.Signer()
	if err != nil {
		return nil, err
	}
	hostKey, err := b.HostKeyCallback()
	if err != nil {
		return nil, err
	}
	timeout := b.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	raw, err := d.DialContext(ctx, "tcp", b.Address)
	if err != nil {
		return nil, err
	}
	_ = raw.SetDeadline(time.Now().Add(timeout))
	checkHost := func(host string, remote net.Addr, key ssh.PublicKey) error {
		if err := hostKey(host, remote, key); err != nil {
			return fmt.Errorf("%w (%v)", errHostKey, err)
		}
		return nil
	}
	c, chans, reqs, err := ssh.NewClientConn(raw, b.Address, &ssh.ClientConfig{
		User: t.login, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: checkHost,
		ClientVersion: "SSH-2.0-Gatehouse", Timeout: timeout,
	})
	if err != nil {
		raw.Close()
		if errors.Is(err, errHostKey) {
			return nil, fmt.Errorf("%v; refusing to connect", err)
		}
		return nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	return &upstream{conn: c, chans: chans, reqs: reqs}, nil
}

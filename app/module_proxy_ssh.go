package app

import (
	"context"
	"fmt"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/proxy/ssh"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/sshcert"
	"github.com/gatehouse/gatehouse/sshca"
)

// proxySSHService is the SSH proxy: its host key and user CA (made on first start when
// none is configured), approvals held on the wire, and the CA's API that signs the
// certificates of `gatehouse ssh login`.
func (a *App) proxySSHService() *Service {
	return a.proxyService("ssh", func(ctx context.Context, sh proxyShared) (protocolProxy, error) {
		pc := a.cfg.Proxy.SSH
		hostKey, err := sshcert.LoadOrCreateKey(pc.HostKeyFile)
		if err != nil {
			return nil, fmt.Errorf("proxy.ssh.host_key_file: %w", err)
		}
		ca, err := sshcert.LoadOrCreateKey(pc.UserCAKeyFile)
		if err != nil {
			return nil, fmt.Errorf("proxy.ssh.user_ca_key_file: %w", err)
		}
		cfg := ssh.Config{
			Listen: pc.Listen, HostKeys: []gossh.Signer{hostKey}, UserCAs: []gossh.PublicKey{ca.PublicKey()},
			AuthTimeout: pc.AuthTimeout, MaxConnections: pc.MaxConnections, MaxUnauthenticated: pc.MaxUnauthenticated,
			MaxChannels: pc.MaxChannels, MaxRecordedBytes: pc.MaxRecordedBytes, Limits: sh.limits, MaskKey: sh.maskKey, Ciphers: pc.Ciphers,
		}
		srv := ssh.New(cfg, a.resources, a.verifier, a.pub, sh.decider, a.reg, a.component("proxy-ssh"))
		srv.SetApprovals(&session.Approvals{JS: a.bus.JS, NC: a.bus.NC, Hint: "approve in Slack or with:", Log: a.component("proxy-ssh")})
		// The CA refuses a certificate to an identity a revocation in force matches (the
		// proxy refuses it at connect in any case).
		revs, err := bus.FollowRevocations(context.Background(), a.bus.JS, a.component("sshca"), nil) // for the process: it ends with the NATS connection
		if err != nil {
			return nil, err
		}
		(&sshca.API{CA: ca, HostKeys: []gossh.PublicKey{hostKey.PublicKey()},
			AddressOf: func() string {
				if addr := a.ListenAddr("ssh"); addr != "" {
					return addr
				}
				return pc.Listen
			},
			Verifier:    a.verifier,
			Login:       sshca.Login{Issuer: a.cfg.Identity.LoginIssuer(a.DevIssuerURL()), ClientID: a.cfg.Identity.Login.ClientID, Scopes: a.cfg.Identity.Login.Scopes},
			Revocations: revs, Log: a.component("sshca")}).Register(a.echo)
		return srv, nil
	})
}

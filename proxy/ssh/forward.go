package ssh

import (
	"context"
	"fmt"
	"io"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/schemas"
)

// Port and agent forwarding: refused unless a rule allows them. A local forwarding
// (direct-tcpip, `ssh -L`) is decided per connection with its destination; a remote one
// (tcpip-forward, `ssh -R`) when it is asked for, and the connections the host then sends
// back (forwarded-tcpip) pass only while one was allowed; agent forwarding
// (auth-agent-req@openssh.com, `ssh -A`) likewise for the agent channels the host opens.
// What flows through a forwarding is counted, not recorded.

// forwarding is what the client was allowed to forward.
type forwarding struct {
	mu     sync.Mutex
	remote int  // remote forwardings allowed and not cancelled
	agent  bool // agent forwarding allowed on a session channel
}

func (c *conn) fw() *forwarding {
	c.chMu.Lock()
	defer c.chMu.Unlock()
	if c.forwards == nil {
		c.forwards = &forwarding{}
	}
	return c.forwards
}

func (c *conn) allowAgent() {
	f := c.fw()
	f.mu.Lock()
	f.agent = true
	f.mu.Unlock()
}

func (c *conn) agentAllowed() bool {
	f := c.fw()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.agent
}

func (c *conn) forwardsAllowed() bool {
	f := c.fw()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.remote > 0
}

// openDirect decides a local forwarding's connection and relays it.
func (c *conn) openDirect(ctx context.Context, nc ssh.NewChannel) {
	var d struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if !c.reserve() {
		_ = nc.Reject(ssh.ResourceShortage, fmt.Sprintf("at most %d channels at once through the gateway", c.srv.cfg.MaxChannels))
		return
	}
	reserved := true
	defer func() {
		if reserved {
			c.release()
		}
	}()
	n := c.channelNumber()
	if ssh.Unmarshal(nc.ExtraData(), &d) != nil {
		c.sess.RefuseRequest(func(id uint64) schemas.Payload {
			return &schemas.SshRequest{QueryID: id, Channel: n, ChannelType: "direct-tcpip", Request: "open"}
		}, "malformed", "malformed direct-tcpip channel")
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip channel")
		return
	}
	q := c.sess.OnRequest(ctx, func(id uint64) schemas.Payload {
		return &schemas.SshRequest{QueryID: id, Channel: n, ChannelType: "direct-tcpip", Request: "open", Host: truncate(d.Host, 255), Port: d.Port}
	}, func(req *schemas.DecisionRequest) {
		req.SSH = &schemas.SSHRequest{Login: c.t.login, Channel: "direct-tcpip", Request: "open", Host: d.Host, Port: d.Port}
	})
	if !q.Decision.Allowed() {
		reason := q.Decision.Reason
		if q.Decision.Effect == schemas.EffectRequireApproval {
			reason = "port forwarding cannot wait for an approval: " + reason
		}
		_ = nc.Reject(ssh.Prohibited, "gatehouse: port forwarding denied: "+reason)
		return
	}
	host, hreqs, err := c.up.conn.OpenChannel("direct-tcpip", nc.ExtraData())
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "the host refused the forwarding: "+err.Error())
		return
	}
	go ssh.DiscardRequests(hreqs)
	client, creqs, err := nc.Accept()
	if err != nil {
		host.Close()
		return
	}
	go ssh.DiscardRequests(creqs)
	reserved = false // the pipe gives it back
	c.wg.Add(1)
	go c.contained("forwarding", func() { defer c.release(); c.pipe(client, host) })
}

// remoteForward decides a remote forwarding (tcpip-forward) and relays it to the host; a
// cancellation passes.
func (c *conn) remoteForward(ctx context.Context, r *ssh.Request) {
	var d struct {
		Addr string
		Port uint32
	}
	if ssh.Unmarshal(r.Payload, &d) != nil {
		_ = r.Reply(false, nil)
		return
	}
	if r.Type == "tcpip-forward" {
		q := c.sess.OnRequest(ctx, func(id uint64) schemas.Payload {
			return &schemas.SshRequest{QueryID: id, ChannelType: "forwarded-tcpip", Request: "tcpip-forward", Host: truncate(d.Addr, 255), Port: d.Port}
		}, func(req *schemas.DecisionRequest) {
			req.SSH = &schemas.SSHRequest{Login: c.t.login, Channel: "forwarded-tcpip", Request: "tcpip-forward", Host: d.Addr, Port: d.Port}
		})
		if !q.Decision.Allowed() {
			c.srv.log.Info("remote forwarding denied", "session", c.sess.ID, "reason", q.Decision.Reason)
			_ = r.Reply(false, nil)
			return
		}
	}
	ok, payload, err := c.up.conn.SendRequest(r.Type, r.WantReply, r.Payload)
	if ok && err == nil {
		f := c.fw()
		f.mu.Lock()
		switch {
		case r.Type == "tcpip-forward":
			f.remote++
		case f.remote > 0: // cancel-tcpip-forward
			f.remote--
		}
		f.mu.Unlock()
	}
	if r.WantReply {
		_ = r.Reply(ok && err == nil, payload)
	}
}

// relayFromHost relays a channel the host opens toward the client, when allowed.
func (c *conn) relayFromHost(ctx context.Context, nc ssh.NewChannel, allowed bool) {
	if !allowed {
		_ = nc.Reject(ssh.Prohibited, "not allowed through the gateway")
		return
	}
	if !c.reserve() {
		_ = nc.Reject(ssh.ResourceShortage, "too many channels on this connection")
		return
	}
	reserved := true
	defer func() {
		if reserved {
			c.release()
		}
	}()
	client, creqs, err := c.client.OpenChannel(nc.ChannelType(), nc.ExtraData())
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, fmt.Sprintf("the client refused the channel: %v", err))
		return
	}
	go ssh.DiscardRequests(creqs)
	host, hreqs, err := nc.Accept()
	if err != nil {
		client.Close()
		return
	}
	go ssh.DiscardRequests(hreqs)
	reserved = false // the pipe gives it back
	c.wg.Add(1)
	go c.contained("forwarding", func() { defer c.release(); c.pipe(client, host) })
}

// pipe copies both ways until both are done, counting the bytes.
func (c *conn) pipe(client, host ssh.Channel) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, _ := io.Copy(host, client)
		c.bytesIn.Add(uint64(n))
		_ = host.CloseWrite()
	}()
	n, _ := io.Copy(client, host)
	c.bytesOut.Add(uint64(n))
	_ = client.CloseWrite()
	wg.Wait()
	client.Close()
	host.Close()
}

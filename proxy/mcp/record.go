package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/identity"
)

// mcpSession is the trail of one MCP session (resource _mcp): session.start at its first
// tool call, mcp.call and mcp.result for each, session.end when the MCP session ends.
type mcpSession struct {
	ss    *sdk.ServerSession
	sess  *session.Session
	calls atomic.Uint64
	once  sync.Once
	err   error
}

func (m *mcpSession) end(ctx context.Context, reason string) error {
	m.once.Do(func() {
		m.err = m.sess.End(ctx, reason, nil, 0, 0)
		if errors.Is(m.err, session.ErrEnded) {
			m.err = nil
		}
	})
	return m.err
}

// call is one tool call being answered.
type call struct {
	s     *Server
	m     *mcpSession
	id    *identity.Identity
	token string
	agent string
	n     uint64
	start time.Time
	// part is what rules see of the call (request.agent): the tool, the MCP client.
	part schemas.AgentRequest
}

// sessionFor returns the trail of the MCP session ss, starting it on first use.
func (s *Server) sessionFor(ctx context.Context, ss *sdk.ServerSession, id *identity.Identity, addr string) (*mcpSession, error) {
	key := ss.ID()
	s.mu.Lock()
	m, ok := s.sessions[key]
	s.mu.Unlock()
	if ok {
		return m, nil
	}
	m = &mcpSession{ss: ss, sess: session.New(id, s.res0, s.pub, nil, s.cfg.Limits)}
	if err := m.sess.Start(ctx, &schemas.SessionStart{Protocol: "mcp", ClientAddr: addr, ApplicationName: clientName(ss)}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if prev, ok := s.sessions[key]; ok {
		// Another call of the same session started it first: this one's start stays a
		// session of its own, ended at once.
		s.mu.Unlock()
		_ = m.end(ctx, "client_closed")
		return prev, nil
	}
	s.sessions[key] = m
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = ss.Wait()
		s.mu.Lock()
		delete(s.sessions, key)
		s.mu.Unlock()
		ectx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
		defer cancel()
		reason := "client_closed"
		if s.ctx.Err() != nil {
			reason = "shutdown"
		}
		if err := m.end(ectx, reason); err != nil {
			s.log.Warn("mcp session end not recorded", "session", m.sess.ID, "err", err)
		}
	}()
	return m, nil
}

// clientName is what the MCP client said it is in initialize (unverified).
func clientName(ss *sdk.ServerSession) string {
	p := ss.InitializeParams()
	if p == nil || p.ClientInfo == nil {
		return ""
	}
	n := p.ClientInfo.Name
	if p.ClientInfo.Version != "" {
		n += "/" + p.ClientInfo.Version
	}
	return truncate(n, 200)
}

// begin admits a tool call: the caller's identity (from the verified token), the
// per-agent call bound, and mcp.call recorded before anything runs (a trail that cannot
// take it refuses the call: fail closed).
func (s *Server) begin(ctx context.Context, req *sdk.CallToolRequest, tool, target string, args any) (*call, error) {
	ti := req.Extra.TokenInfo
	if ti == nil {
		return nil, errors.New("no verified token")
	}
	id, _ := ti.Extra[extraIdentity].(*identity.Identity)
	tok, _ := ti.Extra[extraToken].(string)
	addr, _ := ti.Extra[extraAddr].(string)
	if id == nil || tok == "" {
		return nil, errors.New("no verified identity")
	}
	m, err := s.sessionFor(ctx, req.Session, id, addr)
	if err != nil {
		return nil, errors.New("the audit trail cannot take the call: " + err.Error())
	}
	c := &call{s: s, m: m, id: id, token: tok, agent: ti.UserID, n: m.calls.Add(1), start: time.Now(), part: schemas.AgentRequest{Tool: tool}}
	if p := req.Session.InitializeParams(); p != nil && p.ClientInfo != nil {
		c.part.ClientName, c.part.ClientVersion = truncate(p.ClientInfo.Name, 200), truncate(p.ClientInfo.Version, 200)
	}
	b, _ := json.Marshal(args)
	a, cut := string(b), false
	if max := s.cfg.Limits.MaxSQLBytes; max > 0 && len(a) > max {
		a, cut = truncate(a, max), true
	}
	m.sess.Record(&schemas.McpCall{QueryID: c.n, Tool: tool, Target: target, Arguments: a, ArgumentsTruncated: cut, Client: clientName(req.Session)})
	if err := m.sess.Flush(ctx); err != nil {
		return nil, errors.New("the audit trail cannot take the call: " + err.Error())
	}
	if !s.limits.call(c.agent, c.start) {
		r := Result{Status: StatusRefused, Message: "too many tool calls: this gateway takes at most " + itoa(s.cfg.CallsPerMinute) + " a minute from one agent (mcp.calls_per_minute); wait a minute"}
		c.finish(ctx, &r, "")
		return nil, errors.New(r.Message)
	}
	return c, nil
}

// finish records what the call returned: mcp.result, with the result as the agent got
// it (bounded).
func (c *call) finish(ctx context.Context, r *Result, appName string) {
	ev := &schemas.McpResult{QueryID: c.n, Status: r.Status, Decision: r.decision, Sqlstate: r.SQLState, Message: r.Message,
		ApprovalID: r.ApprovalID, ApplicationName: appName, Rows: uint64(len(r.Rows)), DurationUS: uint64(time.Since(c.start).Microseconds())}
	if len(r.Rows) > 0 || len(r.Columns) > 0 {
		b, _ := json.Marshal(struct {
			Columns []string    `json:"columns"`
			Rows    [][]*string `json:"rows"`
		}{r.Columns, r.Rows})
		ev.ResultBytes = uint64(len(b))
		ev.Result = truncate(string(b), max(c.s.cfg.Limits.ResultChunkBytes, 1024))
	}
	c.m.sess.Record(ev)
	if err := c.m.sess.Flush(ctx); err != nil {
		c.s.log.Warn("mcp result not recorded", "session", c.m.sess.ID, "call", c.n, "err", err)
	}
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

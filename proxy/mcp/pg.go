package mcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehouse/gatehouse/proxy/session"
)

// Statuses of a tool's result (mcp.result's status).
const (
	StatusOK      = "ok"
	StatusDenied  = "denied"
	StatusPending = "pending_approval"
	StatusExpired = "expired"
	StatusError   = "error"
	StatusRefused = "refused"
	StatusLimited = "limited"
)

// Result is what the query and approval_status tools return.
type Result struct {
	Status     string      `json:"status" jsonschema:"ok, denied, pending_approval, expired, error, refused or limited (rows or bytes cut at a limit)"`
	Message    string      `json:"message,omitempty" jsonschema:"why it was denied, refused or failed, or what to do next"`
	SQLState   string      `json:"sqlstate,omitempty" jsonschema:"the SQLSTATE of an error or denial"`
	ApprovalID string      `json:"approval_id,omitempty" jsonschema:"the approval the statement waits for: ask approval_status with it"`
	Columns    []string    `json:"columns,omitempty" jsonschema:"the result's column names"`
	Rows       [][]*string `json:"rows,omitempty" jsonschema:"the rows, each value as text (null: SQL NULL); masked values as the gateway masked them"`
	Truncated  bool        `json:"truncated,omitempty" jsonschema:"more rows or bytes were there than returned"`
	Tag        string      `json:"command_tag,omitempty" jsonschema:"the command tag, e.g. SELECT 3"`

	decision string // for the trail: allow, deny, require_approval
}

// approvalNotice is the proxy's NOTICE for a held statement: "Gatehouse: waiting for
// approval <id> (...".
var approvalNotice = regexp.MustCompile(`^Gatehouse: waiting for approval ([0-9a-fA-F-]{36}) `)

// approvedNotice is the proxy's NOTICE once a held statement is approved and runs.
var approvedNotice = regexp.MustCompile(`^Gatehouse: approval [0-9a-fA-F-]{36} granted; the statement runs now$`)

// approvalRef finds the approval an error of the proxy is about.
var approvalRef = regexp.MustCompile(`(?:approval|requested as) ([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})`)

// execution is a statement running on its own connection to the PostgreSQL proxy.
type execution struct {
	conn *pgconn.PgConn
	done chan Result
	held chan string
	stop context.CancelFunc
}

// start connects to the gateway's PostgreSQL proxy as the agent (its token is the
// password: the proxy authenticates, decides, masks, holds and records exactly as for
// any client) and sends sql. The connection is the statement's alone.
func (s *Server) start(ctx context.Context, c *call, resource, sql, appName string, maxRows int) (*execution, *Result) {
	host, port, err := net.SplitHostPort(s.cfg.Postgres)
	if err != nil {
		return nil, &Result{Status: StatusError, Message: "the gateway's PostgreSQL proxy address is not usable"}
	}
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s sslmode=disable connect_timeout=10", host, port))
	if err != nil {
		return nil, &Result{Status: StatusError, Message: "the gateway's PostgreSQL proxy address is not usable"}
	}
	// Set after parsing: a resource name or the token in a DSN would need quoting, and
	// the password is never part of a string that could be logged.
	cfg.Database, cfg.User, cfg.Password = resource, "gatehouse-mcp", c.token
	// The ticket tells the proxy the tool and the MCP client (request.agent): what the
	// connection could say itself (application_name) is the client's to choose, the
	// ticket only this process's.
	ticket, err := s.agents.Issue(session.AgentCall{Issuer: c.id.Issuer, Subject: c.id.Subject, Agent: c.part,
		MCPSession: c.m.sess.ID, Call: c.n}, session.AgentTicketTTL)
	if err != nil {
		return nil, &Result{Status: StatusError, Message: "the gateway cannot issue the call's agent ticket"}
	}
	cfg.RuntimeParams = map[string]string{"application_name": appName, session.AgentTicketParam: ticket}
	cfg.Fallbacks = nil
	held := make(chan string, 1)
	approved := make(chan struct{}, 1)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if m := approvalNotice.FindStringSubmatch(n.Message); m != nil {
			select {
			case held <- m[1]:
			default:
			}
		}
		if approvedNotice.MatchString(n.Message) {
			select {
			case approved <- struct{}{}:
			default:
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := pgconn.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		r := pgResult(err)
		if r.Status == StatusDenied {
			r.Status = StatusRefused // at the door: a bad token, a revoked identity, no such resource
		}
		return nil, &r
	}
	// The statement's own lifetime: past the tool call (a held statement waits for its
	// approval), bounded by the server's.
	rctx, stop := context.WithTimeout(s.ctx, 24*time.Hour)
	e := &execution{conn: conn, done: make(chan Result, 1), held: held, stop: stop}
	// Once approved, a held statement has mcp.query_timeout to finish, as any other.
	var timedOut atomic.Bool
	go func() {
		select {
		case <-approved:
		case <-rctx.Done():
			return
		}
		t := time.NewTimer(s.cfg.QueryTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			timedOut.Store(true)
			e.abort()
		case <-rctx.Done():
		}
	}()
	go func() {
		r := read(rctx, conn, sql, maxRows, s.cfg.MaxResultBytes)
		if timedOut.Load() {
			r = Result{Status: StatusError, SQLState: "57014", Message: fmt.Sprintf("the statement did not finish within %s of its approval (mcp.query_timeout): cancelled", s.cfg.QueryTimeout)}
		}
		e.done <- r
		stop()
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = conn.Close(closeCtx)
		cancel()
	}()
	return e, nil
}

// abort ends the statement: the connection is closed (the proxy records the client gone,
// and cancels a hold).
func (e *execution) abort() {
	e.stop()
	_ = e.conn.Conn().Close()
}

// read runs sql and reads its result up to maxRows and maxBytes; past either, the
// connection is closed (the rest is not read: the bound holds whatever the statement
// returns).
func read(ctx context.Context, conn *pgconn.PgConn, sql string, maxRows, maxBytes int) Result {
	r := Result{Status: StatusOK, decision: "allow"}
	size := 0
	mrr := conn.Exec(ctx, sql)
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		fields := rr.FieldDescriptions()
		if len(fields) > 0 && r.Columns == nil {
			for _, f := range fields {
				r.Columns = append(r.Columns, f.Name)
				size += len(f.Name) + 8
			}
		}
		for rr.NextRow() {
			vals := rr.Values()
			n := 0
			for _, v := range vals {
				n += len(v) + 8
			}
			if len(r.Rows) >= maxRows || size+n > maxBytes {
				r.Truncated, r.Status = true, StatusLimited
				_ = conn.Conn().Close()
				return r
			}
			row := make([]*string, len(vals))
			for i, v := range vals {
				if v != nil {
					s := string(v)
					row[i] = &s
				}
			}
			r.Rows = append(r.Rows, row)
			size += n
		}
		tag, err := rr.Close()
		if err != nil {
			break
		}
		r.Tag = tag.String()
	}
	if err := mrr.Close(); err != nil {
		e := pgResult(err)
		e.Columns, e.Rows = nil, nil
		return e
	}
	return r
}

// pgResult turns an error from the proxy into a result the agent can act on.
func pgResult(err error) Result {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return Result{Status: StatusError, Message: "the statement did not finish in time"}
		}
		// Connection errors name addresses, not credentials; keep them short.
		return Result{Status: StatusError, Message: "the gateway's PostgreSQL proxy could not run the statement: " + truncate(err.Error(), 300)}
	}
	r := Result{SQLState: pe.Code, Message: pe.Message}
	if pe.Detail != "" {
		r.Message += " (" + pe.Detail + ")"
	}
	if pe.Hint != "" {
		r.Message += "; " + pe.Hint
	}
	if m := approvalRef.FindStringSubmatch(pe.Message + " " + pe.Detail); m != nil && strings.HasPrefix(pe.Message, "Gatehouse") {
		// An approval denied, expired, or (fail-fast) requested or still pending: the
		// message says what to do.
		r.ApprovalID = m[1]
	}
	switch {
	case pe.Code == "42501" && strings.HasPrefix(pe.Message, "Gatehouse"):
		r.Status, r.decision = StatusDenied, "deny"
		if strings.Contains(pe.Message, "approval") {
			r.decision = "require_approval"
		}
	case pe.Code == "57014" && strings.HasPrefix(pe.Message, "Gatehouse"):
		r.Status, r.decision = StatusExpired, "require_approval"
	case pe.Code == "28P01" || pe.Code == "28000" || pe.Code == "3D000":
		r.Status = StatusDenied
	default:
		r.Status = StatusError
	}
	return r
}

func itoa(n int) string { return strconv.Itoa(n) }

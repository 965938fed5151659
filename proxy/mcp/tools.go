package mcp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/services/sqlscan"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// ListResourcesIn takes nothing.
type ListResourcesIn struct{}

// ResourceInfo is one resource an agent can name.
type ResourceInfo struct {
	Name   string            `json:"name"`
	Type   string            `json:"type" jsonschema:"postgres"`
	Labels map[string]string `json:"labels,omitempty"`
	Tools  []string          `json:"tools" jsonschema:"the tools that take this resource"`
}

// ListResourcesOut lists them.
type ListResourcesOut struct {
	Resources []ResourceInfo `json:"resources"`
}

// QueryIn is one SQL statement for one PostgreSQL resource.
type QueryIn struct {
	Resource string `json:"resource" jsonschema:"the resource's name, as list_resources names it"`
	SQL      string `json:"sql" jsonschema:"one SQL statement"`
}

// ApprovalStatusIn names an approval a query returned.
type ApprovalStatusIn struct {
	ApprovalID string `json:"approval_id" jsonschema:"the approval_id a query returned"`
}

func (s *Server) addTools() {
	sdk.AddTool(s.sdk, &sdk.Tool{Name: "list_resources", Title: "List resources",
		Description: "The resources of this gateway that the tools take (PostgreSQL databases for query). Whether a statement may run is decided for each statement.",
		Annotations: &sdk.ToolAnnotations{ReadOnlyHint: true}}, s.listResources)
	sdk.AddTool(s.sdk, &sdk.Tool{Name: "describe_resource", Title: "Describe a resource",
		Description: "The tables and views of a PostgreSQL resource that you may read, with their columns; masked columns are marked with how they are masked (a masked column cannot be used to filter, sort, group or join). Relations you may not read are not listed.",
		Annotations: &sdk.ToolAnnotations{ReadOnlyHint: true}}, s.describe)
	sdk.AddTool(s.sdk, &sdk.Tool{Name: "query", Title: "Run SQL",
		Description: "Run one SQL statement on a PostgreSQL resource through the gateway's policy. Results are bounded and may be masked. " +
			"A denied statement says why. A statement that needs a person's approval returns status pending_approval with an approval_id at once: " +
			"ask approval_status with it later (the gateway holds the statement; it runs once approved).",
		Annotations: &sdk.ToolAnnotations{DestructiveHint: ptr(true), OpenWorldHint: ptr(false)}}, s.query)
	sdk.AddTool(s.sdk, &sdk.Tool{Name: "approval_status", Title: "Approval status",
		Description: "What a statement held for approval came to: pending_approval while it waits, then its result (ok), denied or expired.",
		Annotations: &sdk.ToolAnnotations{ReadOnlyHint: true}}, s.approvalStatus)
}

func ptr[T any](v T) *T { return &v }

func (s *Server) listResources(ctx context.Context, req *sdk.CallToolRequest, _ ListResourcesIn) (*sdk.CallToolResult, ListResourcesOut, error) {
	c, err := s.begin(ctx, req, "list_resources", "", struct{}{})
	if err != nil {
		return nil, ListResourcesOut{}, err
	}
	out := ListResourcesOut{Resources: []ResourceInfo{}}
	for name, r := range s.res.All() {
		if r.Type != "postgres" {
			continue // the tools for HTTP and SSH resources are to come
		}
		out.Resources = append(out.Resources, ResourceInfo{Name: name, Type: r.Type, Labels: r.Labels, Tools: []string{"describe_resource", "query"}})
	}
	slices.SortFunc(out.Resources, func(a, b ResourceInfo) int { return strings.Compare(a.Name, b.Name) })
	names := make([]string, len(out.Resources))
	for i, r := range out.Resources {
		names[i] = r.Name
	}
	c.finish(ctx, &Result{Status: StatusOK, Message: strings.Join(names, ", ")}, "")
	return nil, out, nil
}

func (s *Server) query(ctx context.Context, req *sdk.CallToolRequest, in QueryIn) (*sdk.CallToolResult, Result, error) {
	c, err := s.begin(ctx, req, "query", in.Resource, in)
	if err != nil {
		return nil, Result{}, err
	}
	r, appName := s.runQuery(ctx, c, in)
	c.finish(ctx, &r, appName)
	return toolResult(&r), r, nil
}

// runQuery checks the arguments and the agent's row budget, runs the statement through
// the PostgreSQL proxy, and parks it when the proxy holds it for approval.
func (s *Server) runQuery(ctx context.Context, c *call, in QueryIn) (Result, string) {
	switch {
	case in.Resource == "" || len(in.Resource) > 256:
		return Result{Status: StatusRefused, Message: "resource: name a resource (list_resources)"}, ""
	case strings.TrimSpace(in.SQL) == "":
		return Result{Status: StatusRefused, Message: "sql: empty"}, ""
	case len(in.SQL) > s.cfg.MaxSQLBytes:
		return Result{Status: StatusRefused, Message: fmt.Sprintf("sql: %d bytes, more than the %d this gateway takes (mcp.max_sql_bytes)", len(in.SQL), s.cfg.MaxSQLBytes)}, ""
	case !utf8.ValidString(in.SQL) || strings.ContainsRune(in.SQL, 0):
		return Result{Status: StatusRefused, Message: "sql: not valid UTF-8 text"}, ""
	case statements(in.SQL) != 1:
		// One result per call: the rows of a second statement came back under the first
		// one's columns (found by the attacker).
		return Result{Status: StatusRefused, Message: "sql: one statement per call; send them one at a time"}, ""
	}
	res, ok := s.res.All()[in.Resource]
	if !ok || res.Type != "postgres" {
		return Result{Status: StatusRefused, Message: fmt.Sprintf("resource %q is not a PostgreSQL resource of this gateway (list_resources)", in.Resource)}, ""
	}
	// The rows are set aside before the statement runs, so that calls running at once
	// cannot together go past the limit (found by the attacker: 10 parallel calls did).
	left := s.limits.reserveRows(c.agent, time.Now(), s.cfg.MaxRows)
	if left == 0 {
		return Result{Status: StatusRefused, Message: fmt.Sprintf("row limit: this agent had the %d rows an hour it may have (mcp.rows_per_hour); wait", s.cfg.RowsPerHour)}, ""
	}
	maxRows := left
	appName := fmt.Sprintf("gatehouse-mcp/%s/%d", c.m.sess.ID, c.n)
	e, refused := s.start(ctx, c, in.Resource, in.SQL, appName, maxRows)
	if refused != nil {
		s.limits.tookRows(c.agent, time.Now(), -left)
		return *refused, appName
	}
	timer := time.NewTimer(s.cfg.QueryTimeout)
	defer timer.Stop()
	var r Result
	select {
	case r = <-e.done:
	case id := <-e.held:
		// A parked statement's rows are counted when approval_status delivers them.
		s.limits.tookRows(c.agent, time.Now(), -left)
		if !s.parked.park(c.agent, id, appName, e) {
			e.abort()
			return Result{Status: StatusRefused, decision: "require_approval", ApprovalID: id,
				Message: fmt.Sprintf("the statement needs approval %s, and this agent already has %d statements waiting for approval (mcp.max_parked): it was cancelled", id, s.cfg.MaxParked)}, appName
		}
		return Result{Status: StatusPending, decision: "require_approval", ApprovalID: id,
			Message: "held for approval " + id + ": a person must approve it; ask approval_status with this id (the gateway keeps the statement waiting; it runs once approved)"}, appName
	case <-timer.C:
		e.abort()
		r = Result{Status: StatusError, SQLState: "57014", Message: fmt.Sprintf("the statement did not finish within %s (mcp.query_timeout): cancelled", s.cfg.QueryTimeout)}
	case <-ctx.Done():
		e.abort()
		r = Result{Status: StatusError, Message: "the call was cancelled"}
	}
	if r.Status == StatusLimited && len(r.Rows) >= left && left < s.cfg.MaxRows {
		r.Message = fmt.Sprintf("cut at the %d rows this agent may still have this hour (mcp.rows_per_hour)", left)
	} else if r.Status == StatusLimited {
		r.Message = fmt.Sprintf("cut at %d rows or %d bytes (mcp.max_rows, mcp.max_result_bytes): narrow the statement", s.cfg.MaxRows, s.cfg.MaxResultBytes)
	}
	s.limits.tookRows(c.agent, time.Now(), len(r.Rows)-left)
	return r, appName
}

func (s *Server) approvalStatus(ctx context.Context, req *sdk.CallToolRequest, in ApprovalStatusIn) (*sdk.CallToolResult, Result, error) {
	c, err := s.begin(ctx, req, "approval_status", "", in)
	if err != nil {
		return nil, Result{}, err
	}
	r, appName := s.status(c, in.ApprovalID)
	c.finish(ctx, &r, appName)
	return toolResult(&r), r, nil
}

func (s *Server) status(c *call, id string) (Result, string) {
	if len(id) > 64 {
		return Result{Status: StatusRefused, Message: "approval_id: not an approval id"}, ""
	}
	r, appName, ok := s.parked.status(c.agent, id)
	switch {
	case !ok:
		return Result{Status: StatusRefused, ApprovalID: id,
			Message: "no statement of yours waits for this approval here (an id from another agent or gateway, or a result older than mcp.parked_results)"}, ""
	case r == nil:
		return Result{Status: StatusPending, decision: "require_approval", ApprovalID: id, Message: "not finished: waiting for a person's approval, or running once approved (within mcp.query_timeout of it)"}, appName
	}
	out := *r
	out.ApprovalID = id
	if out.Status == StatusOK || out.Status == StatusLimited {
		// No more rows than the agent may still have this hour (the attacker had a
		// statement approved after the limit was reached, and got its rows).
		if g := s.limits.reserveRows(c.agent, time.Now(), len(out.Rows)); g < len(out.Rows) {
			out.Rows, out.Truncated, out.Status = out.Rows[:g], true, StatusLimited
			out.Message = fmt.Sprintf("cut at the rows this agent may still have this hour (mcp.rows_per_hour %d)", s.cfg.RowsPerHour)
		}
		out.decision = "require_approval"
	}
	return out, appName
}

// toolResult marks a result that is not an answer as a tool error (its structured
// content still says why), with its message as the text.
func toolResult(r *Result) *sdk.CallToolResult {
	switch r.Status {
	case StatusOK, StatusLimited, StatusPending:
		return nil
	}
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: r.Status + ": " + r.Message}}}
}

// statements counts the statements of sql as PostgreSQL's scanner separates them (0 when
// it cannot be read with confidence: an unterminated quote or comment).
func statements(sql string) int {
	n, open := 0, false
	ok := sqlscan.Lex(sql, func(k sqlscan.Kind, start, end int) {
		switch k {
		case sqlscan.Comment:
			return
		case sqlscan.Other:
			for _, c := range sql[start:end] {
				switch {
				case c == ';':
					open = false
				case !unicode.IsSpace(c) && !open:
					open = true
					n++
				}
			}
		default:
			if !open {
				open = true
				n++
			}
		}
	})
	if !ok {
		return 0
	}
	return n
}

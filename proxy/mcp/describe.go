package mcp

import (
	"context"
	"fmt"
	"slices"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gatehouse/gatehouse/schemas"
)

// Catalogs are the resources' catalogs, as the PostgreSQL proxy publishes them (KV
// gh_catalogs).
type Catalogs interface {
	Get(ctx context.Context, resource string) (*schemas.Catalog, error)
}

// DescribeIn names a resource, and optionally a schema.
type DescribeIn struct {
	Resource string `json:"resource" jsonschema:"the resource's name, as list_resources names it"`
	Schema   string `json:"schema,omitempty" jsonschema:"only the relations of this schema"`
}

// DescribeOut is the part of a resource's schema the caller may read.
type DescribeOut struct {
	Resource  string         `json:"resource"`
	Relations []RelationInfo `json:"relations"`
	// Detectors are the content detectors applied to every value the caller reads.
	Detectors []string `json:"detectors,omitempty" jsonschema:"content detectors (card, email, ...) masking matching values in any column"`
	Truncated bool     `json:"truncated,omitempty" jsonschema:"more relations than described: name a schema"`
}

// RelationInfo is a table or view the caller may read, with its columns.
type RelationInfo struct {
	Schema        string       `json:"schema"`
	Name          string       `json:"name"`
	Kind          string       `json:"kind" jsonschema:"table, view, materialized_view, foreign_table or partitioned_table"`
	Columns       []ColumnInfo `json:"columns"`
	NeedsApproval bool         `json:"needs_approval,omitempty" jsonschema:"reading it needs a person's approval"`
}

// ColumnInfo is a column; Masked says how its values reach the caller when masked.
type ColumnInfo struct {
	Name   string `json:"name"`
	Masked string `json:"masked,omitempty" jsonschema:"how the column's values are masked for the caller: redact, partial or hmac (a token); it cannot be used to filter, sort, group or join"`
}

// maxDescribed bounds the relations one describe_resource call decides.
const maxDescribed = 100

var relationKinds = map[string]string{"r": "table", "p": "partitioned_table", "v": "view", "m": "materialized_view", "f": "foreign_table"}

func (s *Server) describe(ctx context.Context, req *sdk.CallToolRequest, in DescribeIn) (*sdk.CallToolResult, DescribeOut, error) {
	c, err := s.begin(ctx, req, "describe_resource", in.Resource, in)
	if err != nil {
		return nil, DescribeOut{}, err
	}
	out, r := s.describeResource(ctx, c, in)
	if r.Status == StatusOK {
		var names []string
		for _, rel := range out.Relations {
			names = append(names, rel.Schema+"."+rel.Name)
		}
		r.Message = truncate(strings.Join(names, ", "), 2000)
	}
	c.finish(ctx, &r, "")
	if r.Status != StatusOK {
		return toolResult(&r), DescribeOut{Resource: in.Resource, Relations: []RelationInfo{}}, nil
	}
	return nil, out, nil
}

// describeResource is the resource's catalog as far as policy lets the caller see it:
// each relation is decided as a SELECT * of it, for the caller; a denied one is left out
// (not even named), a masked one has its masked columns marked.
func (s *Server) describeResource(ctx context.Context, c *call, in DescribeIn) (DescribeOut, Result) {
	out := DescribeOut{Resource: in.Resource, Relations: []RelationInfo{}}
	res, ok := s.res.All()[in.Resource]
	if !ok || res.Type != "postgres" {
		return out, Result{Status: StatusRefused, Message: fmt.Sprintf("resource %q is not a PostgreSQL resource of this gateway (list_resources)", in.Resource)}
	}
	if len(in.Schema) > 128 {
		return out, Result{Status: StatusRefused, Message: "schema: too long"}
	}
	cat, err := s.catalogs.Get(ctx, in.Resource)
	if err != nil || cat == nil {
		return out, Result{Status: StatusError, Message: "the resource's catalog is not available yet (the PostgreSQL proxy reads it at its first connection): try again"}
	}
	detectors := map[string]bool{}
	for _, rel := range cat.Relations {
		kind, ok := relationKinds[rel.Kind]
		if !ok || systemSchema(rel.Schema) || (in.Schema != "" && rel.Schema != in.Schema) {
			continue
		}
		if len(out.Relations) >= maxDescribed {
			out.Truncated = true
			break
		}
		d := s.decider.Decide(ctx, &schemas.DecisionRequest{Identity: c.id.Identity, Claims: c.id.Claims,
			Resource: schemas.Resource{Name: res.Name, Type: res.Type, Labels: res.Labels},
			SQL:      &schemas.SQLRequest{Text: "SELECT * FROM " + quoteIdent(rel.Schema) + "." + quoteIdent(rel.Name), CatalogVersion: cat.Version}, Agent: &c.part})
		var info RelationInfo
		switch d.Effect {
		case schemas.EffectAllow, schemas.EffectMask:
		case schemas.EffectRequireApproval:
			info.NeedsApproval = true
		default:
			continue // denied, or no decision: not shown (fail closed)
		}
		info.Schema, info.Name, info.Kind = rel.Schema, rel.Name, kind
		masked := map[int]string{}
		if d.Mask != nil {
			if len(d.Mask.Outputs) > 0 {
				for _, o := range d.Mask.Outputs[0] {
					masked[o.Column] = o.Method
				}
			} else if !d.Mask.Planned && len(d.Mask.Columns) > 0 {
				masked[-1] = "redact" // no plan: the proxy masks every column
			}
			for _, det := range d.Mask.Detectors {
				detectors[det.Name] = true
			}
		}
		i := 0
		for _, col := range rel.Columns {
			if col == "" {
				continue // dropped
			}
			ci := ColumnInfo{Name: col, Masked: masked[i]}
			if m, all := masked[-1]; all {
				ci.Masked = m
			}
			info.Columns = append(info.Columns, ci)
			i++
		}
		out.Relations = append(out.Relations, info)
	}
	for d := range detectors {
		out.Detectors = append(out.Detectors, d)
	}
	slices.Sort(out.Detectors)
	return out, Result{Status: StatusOK}
}

func systemSchema(s string) bool {
	return s == "pg_catalog" || s == "information_schema" || strings.HasPrefix(s, "pg_toast") || strings.HasPrefix(s, "pg_temp")
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

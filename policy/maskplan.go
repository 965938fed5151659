package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/schemas"
)

// valueRevealing are system relations whose rows hold values of other tables' columns
// (planner statistics): what they show cannot be traced to a source column.
var valueRevealing = map[string]bool{
	"pg_catalog.pg_statistic": true, "pg_catalog.pg_statistic_ext_data": true, "pg_catalog.pg_stats": true,
	"pg_catalog.pg_stats_ext": true, "pg_catalog.pg_stats_ext_exprs": true,
}

// howNames say how a masked column was used, for the refusal.
var howNames = map[string]string{
	UseFilter: "filter rows (WHERE, HAVING, JOIN ON, FILTER, LIMIT)", UseJoin: "join on it (USING, NATURAL)",
	UseSort: "sort by it (ORDER BY, DISTINCT ON)", UseGroup: "group by it", UseDistinct: "compare rows with it (DISTINCT, UNION, INTERSECT, EXCEPT)",
	UseWindow: "partition or order a window by it", UseWrite: "write it elsewhere",
	UseCall: "pass it to a function in FROM or one with effects",
}

// planMask works out, from the statement's lineage, which result columns a mask decision
// masks and how, or turns the decision into a refusal: when the statement uses a masked
// column other than as a result (probing), returns values computed from one that a rule
// says may only be returned as itself, or could not be resolved (fail closed).
func planMask(d *schemas.DecisionReply, info *SQLInfo, cat *Catalog) {
	refuse := func(col schemas.MaskColumn, reason string) {
		d.Effect, d.Mask, d.Reason = schemas.EffectDeny, nil, reason
		if p, r, ok := strings.Cut(col.Rule, "/"); ok {
			d.Policy, d.Rule = p, r
		}
	}
	lin := info.Lineage
	if lin == nil || cat == nil {
		refuse(d.Mask.Columns[0], "masked columns cannot be traced without the resource's catalog; refusing (fail closed)")
		return
	}
	byName := map[string]schemas.MaskColumn{}
	for _, c := range d.Mask.Columns {
		byName[c.Column] = c
	}
	// A source column is masked when it, or the same column of a table it inherits from,
	// is named by a mask.
	maskOf := func(src string) (schemas.MaskColumn, bool) {
		for _, n := range cat.maskNames(src) {
			if c, ok := byName[n]; ok {
				return c, true
			}
		}
		return schemas.MaskColumn{}, false
	}
	// A masked column the catalog does not have, on a table it has: renamed or dropped
	// since the policy was written. Reads of that table are refused until the policy names
	// its columns again.
	for _, c := range d.Mask.Columns {
		table := c.Column[:strings.LastIndexByte(c.Column, '.')]
		if cat.Has(table) && !slices.Contains(cat.ColumnsOf(table), c.Column) && !cat.renamedFrom(c.Column) && slices.Contains(info.Tables, table) {
			refuse(c, fmt.Sprintf("the policy masks %s, which %s does not have (renamed or dropped?); statements reading %s are refused until the policy names its columns", c.Column, table, table))
			return
		}
	}
	for _, t := range info.Tables {
		if valueRevealing[t] {
			lin.Unresolved = append(lin.Unresolved, t+" (it holds values of other tables' columns)")
		}
	}
	for _, u := range lin.Uses {
		if c, ok := maskOf(u.Column); ok && !c.AllowProbing {
			refuse(c, fmt.Sprintf("%s is masked for this caller; a statement that uses it to %s would reveal it row by row", u.Column, howNames[u.How]))
			return
		}
	}
	if len(lin.Unresolved) > 0 {
		refuse(d.Mask.Columns[0], "results are masked for this caller, and the gateway cannot trace where every value of this statement comes from: "+
			strings.Join(lin.Unresolved, "; ")+"; refusing (fail closed)")
		return
	}
	if len(lin.Code) > 0 {
		refuse(d.Mask.Columns[0], "results are masked for this caller, and this statement runs code the gateway cannot see into ("+
			strings.Join(lin.Code, "; ")+"), which could read masked columns; refusing")
		return
	}
	d.Mask.Outputs = make([][]schemas.MaskedOutput, len(lin.Outputs))
	d.Mask.Planned = true
	d.Mask.Opaque = lin.Opaque
	for i, stmt := range lin.Outputs {
		for j, o := range stmt {
			var by []string
			method := ""
			for _, src := range o.Sources {
				c, ok := maskOf(src)
				if !ok {
					continue
				}
				by = append(by, src)
				m := c.Method
				if !o.Bare {
					if c.RefuseDerived {
						refuse(c, fmt.Sprintf("%s is masked for this caller and may be returned only as itself; result column %d (%s) is computed from it", src, j+1, o.Name))
						return
					}
					m = derivedMethod(m)
				}
				if methodRank[m] > methodRank[method] {
					method = m
				}
			}
			if method != "" {
				d.Mask.Outputs[i] = append(d.Mask.Outputs[i], schemas.MaskedOutput{Column: j, Method: method, By: strings.Join(by, ", "), Whole: !o.Bare})
			}
		}
	}
}

// methodRank orders masking methods from the least to the most hiding.
var methodRank = map[string]int{"": 0, "partial": 1, "hmac": 2, "redact": 3}

// derivedMethod is how a value computed from a masked column is masked: whole, always
// redacted. A partial mask would show the last characters of something other than the
// column; a keyed token of a computed value is an oracle (case when email like 'a%' then
// 'x' else email end gives the token of 'x' exactly when the guess holds).
func derivedMethod(string) string { return "redact" }

// writeValues are the writes as CEL sees them (request.sql.writes: table, action).
func writeValues(ws []Write) []any {
	out := make([]any, 0, len(ws))
	for _, w := range ws {
		out = append(out, map[string]any{"table": w.Table, "action": w.Action})
	}
	return out
}

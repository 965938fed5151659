package query

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/seal"
)

// ProblemIncomplete is the kind of problem of a statement whose trail has no completion.
const ProblemIncomplete = "incomplete"

// incompleteStatements reports the statements of an ended session that ran, or were about
// to, and have no completion (db.query.done): a statement that was still running when its
// gateway was killed, or events lost on their way. A statement counts as run when it was
// sent as a simple query or function call, or bound for execution (db.bind) in the
// extended protocol; one only prepared never runs. A session without an end is not looked
// at: its statements may still be running (an open session is reported as cut once its
// gateway is gone).
func incompleteStatements(id string, evs []schemas.Event) []seal.Problem {
	var end *schemas.SessionEnd
	for i := range evs {
		if evs[i].Type == schemas.TypeSessionEnd {
			end = &schemas.SessionEnd{}
			if evs[i].Decode(end) != nil {
				end = &schemas.SessionEnd{}
			}
		}
	}
	if end == nil {
		return nil
	}
	type stmt struct {
		seq       uint64
		sql       string
		ran, done bool
	}
	stmts := map[uint64]*stmt{}
	of := func(q uint64) *stmt {
		s := stmts[q]
		if s == nil {
			s = &stmt{}
			stmts[q] = s
		}
		return s
	}
	for i := range evs {
		switch evs[i].Type {
		case schemas.TypeDbQuery:
			var q schemas.DbQuery
			if evs[i].Decode(&q) != nil {
				continue
			}
			s := of(q.QueryID)
			s.seq, s.sql = evs[i].Seq, q.SQL
			s.ran = s.ran || q.Protocol != "extended"
		case schemas.TypeDbBind:
			var b schemas.DbBind
			if evs[i].Decode(&b) == nil {
				of(b.QueryID).ran = true
			}
		case schemas.TypeDbQueryDone:
			var d schemas.DbQueryDone
			if evs[i].Decode(&d) == nil {
				of(d.QueryID).done = true
			}
		}
	}
	var out []seal.Problem
	for q, s := range stmts {
		if !s.ran || s.done || s.seq == 0 {
			continue
		}
		why := "events lost on their way to the audit store?"
		if end.Reason == seal.ReasonGatewayLost {
			why = "the gateway process was lost while it ran (its client never got a completion)"
		}
		out = append(out, seal.Problem{Session: id, Seq: s.seq, Query: q, Kind: ProblemIncomplete, Detail: fmt.Sprintf(
			"statement %d (%s) has no completion (db.query.done) and the session ended (%s): %s", q, printableSQL(s.sql), end.Reason, why)})
	}
	slices.SortFunc(out, func(a, b seal.Problem) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// printableSQL is a statement cut to a length a report line can hold.
func printableSQL(sql string) string {
	const most = 120
	r := []rune(sql)
	if len(r) > most {
		return fmt.Sprintf("%q…", string(r[:most]))
	}
	return fmt.Sprintf("%q", sql)
}

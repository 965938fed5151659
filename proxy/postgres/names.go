package postgres

import (
	"fmt"
	"net"
	"slices"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/services/policy"
	"github.com/gatehouse/gatehouse/services/sqlscan"
)

// Prepared statements and cursors live in one namespace per backend session, shared by the
// protocol (Parse, Bind) and by SQL (PREPARE, EXECUTE, DEALLOCATE, DISCARD ALL, DECLARE,
// FETCH, CLOSE). The proxy decides and masks a statement by what the name stands for, so it
// keeps the same namespace as the backend: SQL statements that change it are applied when
// the backend reports them done, and the extended protocol waits for them before it uses a
// name. Otherwise a client could make the proxy believe a name stands for one statement
// while the backend runs another (a duplicate Parse, a statement prepared in SQL).

// nameOp is what one SQL statement does to the namespace.
type nameOp struct {
	kind string // "prepare", "deallocate", "discard", "declare", "close"
	name string // "" with deallocate and close: all of them
}

// tag is the CommandComplete tag that says the statement was done.
func (o nameOp) tag() string {
	switch o.kind {
	case "prepare":
		return "PREPARE"
	case "deallocate":
		if o.name == "" {
			return "DEALLOCATE ALL"
		}
		return "DEALLOCATE"
	case "discard":
		return "DISCARD ALL"
	case "declare":
		return "DECLARE CURSOR"
	case "close":
		if o.name == "" {
			return "CLOSE CURSOR ALL"
		}
		return "CLOSE CURSOR"
	}
	return ""
}

// nameUse is a name a statement runs: EXECUTE of a prepared statement, FETCH or MOVE of a
// cursor.
type nameUse struct {
	cursor bool
	name   string
}

// namingKinds are the statement kinds (as the policy service reports them) that create,
// drop or use names; only statements with one of them are parsed again here.
var namingKinds = []string{"prepare", "deallocate", "discard", "declare_cursor", "close_portal", "execute", "fetch"}

func namesStatement(kinds []string) bool {
	for _, k := range kinds {
		if slices.Contains(namingKinds, k) {
			return true
		}
	}
	return false
}

// namesOf is sqlNames, remembered for the session's recent short statements: a prepared
// EXECUTE or FETCH comes back with the same text at every execution, and parsing it again
// cost tens of microseconds each time. Client loop only.
func (c *conn) namesOf(sql string) ([]nameOp, []nameUse, error) {
	if r, ok := c.namesSeen[sql]; ok {
		return r.ops, r.uses, r.err
	}
	ops, uses, err := sqlNames(sql)
	if len(sql) <= maxNamesSQL {
		if c.namesSeen == nil || len(c.namesSeen) >= maxNamesSeen {
			c.namesSeen = make(map[string]namesResult, 8)
		}
		c.namesSeen[sql] = namesResult{ops, uses, err}
	}
	return ops, uses, err
}

// A session remembers the names of at most maxNamesSeen statements of up to maxNamesSQL
// bytes (then starts over): at most about 64 KiB.
const (
	maxNamesSeen = 64
	maxNamesSQL  = 1 << 10
)

type namesResult struct {
	ops  []nameOp
	uses []nameUse
	err  error
}

// sqlNames parses sql and returns, in order, what its statements do to the namespace and
// which names they run.
func sqlNames(sql string) (ops []nameOp, uses []nameUse, err error) {
	if len(sql) > policy.MaxDepth {
		if d, ok := sqlscan.Depth(sql); !ok || d > policy.MaxDepth {
			// Decided already (the policy refuses it); never handed to the parser, whose
			// C code would recurse into it without a bound.
			return nil, nil, fmt.Errorf("statement nests too deeply to parse")
		}
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, nil, err
	}
	for _, raw := range tree.Stmts {
		switch n := raw.Stmt.Node.(type) {
		case *pg_query.Node_PrepareStmt:
			ops = append(ops, nameOp{kind: "prepare", name: n.PrepareStmt.Name})
		case *pg_query.Node_DeallocateStmt:
			name := n.DeallocateStmt.Name
			if n.DeallocateStmt.Isall {
				name = ""
			}
			ops = append(ops, nameOp{kind: "deallocate", name: name})
		case *pg_query.Node_DiscardStmt:
			if n.DiscardStmt.Target == pg_query.DiscardMode_DISCARD_ALL {
				ops = append(ops, nameOp{kind: "discard"})
			}
		case *pg_query.Node_DeclareCursorStmt:
			ops = append(ops, nameOp{kind: "declare", name: n.DeclareCursorStmt.Portalname})
		case *pg_query.Node_ClosePortalStmt:
			ops = append(ops, nameOp{kind: "close", name: n.ClosePortalStmt.Portalname})
		}
		policy.Walk(raw.Stmt.ProtoReflect(), func(m protoreflect.Message) {
			switch n := m.Interface().(type) {
			case *pg_query.ExecuteStmt:
				uses = append(uses, nameUse{name: n.Name})
			case *pg_query.FetchStmt:
				uses = append(uses, nameUse{cursor: true, name: n.Portalname})
			}
		})
	}
	return ops, uses, nil
}

// nameChange is a namespace change the backend has done, for the client loop to apply.
type nameChange struct {
	op nameOp
	q  *session.Query // the statement that did it (PREPARE, DECLARE): what the name stands for
}

// noteNameChange records a change the backend reported done (backend loop).
func (c *conn) noteNameChange(ch nameChange) {
	c.nameMu.Lock()
	c.nameChanges = append(c.nameChanges, ch)
	c.nameMu.Unlock()
	c.namesChanged.Store(true)
}

// syncNames brings the client loop's view of the namespace up to date before a message
// that uses a name: it waits until the SQL statements in flight that change names are done
// (flushing them to the backend first), then applies what they did.
func (c *conn) syncNames() error {
	if c.nameOpsInFlight.Load() > 0 {
		// In the extended protocol the backend holds its answers until a Sync or a Flush:
		// the proxy asks for them (a Flush has no answer of its own).
		if _, err := c.bw.Write(flushMsg); err != nil {
			return err
		}
		if err := c.bw.Flush(); err != nil {
			return err
		}
		c.qmu.Lock()
		for c.nameOpsInFlight.Load() > 0 && !c.closed && !c.nameOpsSkipped() {
			c.qcond.Wait()
		}
		closed := c.closed
		c.qmu.Unlock()
		if closed {
			return net.ErrClosed
		}
	}
	if !c.namesChanged.Swap(false) {
		return nil
	}
	c.nameMu.Lock()
	changes := c.nameChanges
	c.nameChanges = nil
	c.nameMu.Unlock()
	for _, ch := range changes {
		switch ch.op.kind {
		case "prepare":
			c.dropStatement(ch.op.name)
			if len(c.stmts) < maxPreparedStatements {
				c.stmts[ch.op.name] = ch.q
			}
		case "deallocate", "discard":
			if ch.op.name != "" {
				c.dropStatement(ch.op.name)
				break
			}
			for name := range c.stmts {
				if name != "" { // DEALLOCATE ALL leaves the unnamed statement
					c.dropStatement(name)
				}
			}
			if ch.op.kind == "discard" {
				clear(c.cursors)
			}
		case "declare":
			if c.cursors == nil {
				c.cursors = map[string]*session.Query{}
			}
			if len(c.cursors) < maxPreparedStatements {
				c.cursors[ch.op.name] = ch.q
			}
		case "close":
			if ch.op.name == "" {
				clear(c.cursors)
			} else {
				delete(c.cursors, ch.op.name)
			}
		}
	}
	return nil
}

var flushMsg = []byte{'H', 0, 0, 0, 4}

// nameOpsSkipped reports (qmu held) whether the backend is skipping to the next Sync after
// an error and the first statement in flight that changes names comes before it: that
// statement will not run, and waiting for it would wait for the client's Sync.
func (c *conn) nameOpsSkipped() bool {
	if !c.skipping.Load() {
		return false
	}
	for _, e := range c.pending {
		if e.kind == 'S' {
			return false
		}
		if e.opsQ != nil {
			return true
		}
	}
	return false
}

// dropStatement forgets prepared statement name.
func (c *conn) dropStatement(name string) {
	if prev, ok := c.stmts[name]; ok {
		c.forgetDescribed(prev)
		delete(c.stmtUsed, prev)
		delete(c.stmtUses, prev)
		delete(c.stmtNames, prev)
		delete(c.approved, prev)
		delete(c.stmts, name)
	}
}

// referenced returns the statements that the names sql runs stand for, as far as the
// session knows them (a name it does not know makes the backend fail the statement).
func (c *conn) referenced(uses []nameUse) []session.Ref {
	var refs []session.Ref
	for _, u := range uses {
		m := c.stmts
		if u.cursor {
			m = c.cursors
		}
		if q := m[u.name]; q != nil {
			refs = append(refs, session.Ref{Q: q, Cursor: u.cursor})
		}
	}
	return refs
}

// duplicateStatement is PostgreSQL's answer to a Parse of a name in use.
func duplicateStatement(name string) []byte {
	return encode(pgError("ERROR", "42P05", fmt.Sprintf("prepared statement %q already exists", name), ""))
}

package postgres

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/services/pgtree"
	"github.com/gatehouse/gatehouse/services/sqlscan"
)

// Prepared statements and cursors live in one namespace per backend session, shared by the
// protocol (Parse, Bind) and by SQL (PREPARE, EXECUTE, DEALLOCATE, DISCARD ALL, DECLARE,
// FETCH, CLOSE). The proxy decides and masks a statement by what the name stands for, so it
// keeps the same namespace as the backend: SQL statements that change it are applied when
// the backend reports them done, and the extended protocol waits for them before it uses a
// name. Otherwise a client could make the proxy believe a name stands for one statement
// while the backend runs another (a duplicate Parse, a statement prepared in SQL).

// nameState is the session's namespace as SQL changes it. The client loop alone touches
// cursors, seen, lastOps and lastUses. The backend loop reports the changes the backend has
// done (changes, guarded by mu; changed says there are some); opsInFlight counts the
// statements in flight that change names: the client loop adds, release (queue.mu held)
// takes off and signals the queue's cond.
type nameState struct {
	cursors     map[string]*session.Query // cursor name → the DECLARE that made it
	seen        map[string]namesResult    // namesOf's memory
	lastOps     []nameOp                  // what the statement just decided does to names
	lastUses    bool                      // the statement just decided runs names (EXECUTE, FETCH)
	opsInFlight atomic.Int32
	changed     atomic.Bool
	mu          sync.Mutex
	changes     []nameChange
}

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
	if r, ok := c.names.seen[sql]; ok {
		return r.ops, r.uses, r.err
	}
	ops, uses, err := sqlNames(sql)
	if len(sql) <= maxNamesSQL {
		if c.names.seen == nil || len(c.names.seen) >= maxNamesSeen {
			c.names.seen = make(map[string]namesResult, 8)
		}
		c.names.seen[sql] = namesResult{ops, uses, err}
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
	if len(sql) > sqlscan.MaxDepth {
		if d, ok := sqlscan.Depth(sql); !ok || d > sqlscan.MaxDepth {
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
		pgtree.Walk(raw.Stmt.ProtoReflect(), func(m protoreflect.Message) {
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
	c.names.mu.Lock()
	c.names.changes = append(c.names.changes, ch)
	c.names.mu.Unlock()
	c.names.changed.Store(true)
}

// syncNames brings the client loop's view of the namespace up to date before a message
// that uses a name: it waits until the SQL statements in flight that change names are done
// (flushing them to the backend first), then applies what they did.
func (c *conn) syncNames() error {
	if c.names.opsInFlight.Load() > 0 {
		// In the extended protocol the backend holds its answers until a Sync or a Flush:
		// the proxy asks for them (a Flush has no answer of its own).
		if _, err := c.bw.Write(flushMsg); err != nil {
			return err
		}
		if err := c.bw.Flush(); err != nil {
			return err
		}
		c.queue.mu.Lock()
		for c.names.opsInFlight.Load() > 0 && !c.queue.closed && !c.nameOpsSkipped() {
			c.queue.cond.Wait()
		}
		closed := c.queue.closed
		c.queue.mu.Unlock()
		if closed {
			return net.ErrClosed
		}
	}
	if !c.names.changed.Swap(false) {
		return nil
	}
	c.names.mu.Lock()
	changes := c.names.changes
	c.names.changes = nil
	c.names.mu.Unlock()
	for _, ch := range changes {
		switch ch.op.kind {
		case "prepare":
			c.dropStatement(ch.op.name)
			if len(c.prep.stmts) < maxPreparedStatements {
				c.prep.stmts[ch.op.name] = ch.q
			}
		case "deallocate", "discard":
			if ch.op.name != "" {
				c.dropStatement(ch.op.name)
				break
			}
			for name := range c.prep.stmts {
				if name != "" { // DEALLOCATE ALL leaves the unnamed statement
					c.dropStatement(name)
				}
			}
			if ch.op.kind == "discard" {
				clear(c.names.cursors)
			}
		case "declare":
			if c.names.cursors == nil {
				c.names.cursors = map[string]*session.Query{}
			}
			if len(c.names.cursors) < maxPreparedStatements {
				c.names.cursors[ch.op.name] = ch.q
			}
		case "close":
			if ch.op.name == "" {
				clear(c.names.cursors)
			} else {
				delete(c.names.cursors, ch.op.name)
			}
		}
	}
	return nil
}

var flushMsg = []byte{'H', 0, 0, 0, 4}

// nameOpsSkipped reports (queue.mu held) whether the backend is skipping to the next Sync after
// an error and the first statement in flight that changes names comes before it: that
// statement will not run, and waiting for it would wait for the client's Sync.
func (c *conn) nameOpsSkipped() bool {
	if !c.queue.skipping.Load() {
		return false
	}
	for _, e := range c.queue.pending {
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
	if prev, ok := c.prep.stmts[name]; ok {
		c.described.forget(prev)
		delete(c.prep.used, prev)
		delete(c.prep.uses, prev)
		delete(c.prep.ops, prev)
		delete(c.prep.approved, prev)
		delete(c.prep.stmts, name)
	}
}

// referenced returns the statements that the names sql runs stand for, as far as the
// session knows them (a name it does not know makes the backend fail the statement).
func (c *conn) referenced(uses []nameUse) []session.Ref {
	var refs []session.Ref
	for _, u := range uses {
		m := c.prep.stmts
		if u.cursor {
			m = c.names.cursors
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

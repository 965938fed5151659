package sqlscan

import "strings"

// MaxDepth bounds how deeply a statement may nest (Depth's bound) before it is parsed:
// pg_query's C code recurses into the parse tree without a bound, and a chain of 100,000
// operators crashes the process. Below it, PostgreSQL's own limits apply (the parse tree
// handed to Go is refused past 10,000 levels; a server's max_stack_depth well before).
// The policy service and the proxy (which parses statements to resolve names) both hold
// statements to it.
const MaxDepth = 4000

// Depth returns an upper bound of how deeply the parse tree of sql nests, from its
// tokens alone, and false when sql cannot be lexed (Lex). PostgreSQL's parser builds a
// left-deep tree for a chain of operators (1+1+1...), set operations (UNION ...), joins,
// casts, NOT, CASE and the like, and pg_query's C code that hands the tree over recurses
// into it without a bound: a chain of 100,000 crashes the process (stack overflow in C,
// which no recover catches). Depth lets the caller refuse such a text before the parser
// sees it.
//
// The bound: within each level of brackets (and CASE ... END), the operators and nesting
// keywords of the deepest item, plus the set operations of the whole level and the joins
// of its deepest set-operation branch (they span commas: `select 1, 2 union select 1,
// 2`), plus the deepest bracket inside,
// plus one per bracket; the deepest statement of a list. Items are separated by commas,
// and by AND and OR, whose chains the parser flattens into one list (but not the AND of
// BETWEEN ... AND, whose right side nests).
func Depth(sql string) (int, bool) {
	type level struct {
		setOps, joins, maxJoins int // set operations; joins of this branch, of the deepest branch
		item, itemChild, best   int
		between                 int  // BETWEENs waiting for their AND
		isCase                  bool // opened by CASE, closed by END
	}
	stack := []level{{}}
	deepest := 0
	closeItem := func(l *level) {
		l.best = max(l.best, l.item+l.itemChild)
		l.item, l.itemChild, l.between = 0, 0, 0
	}
	depthOf := func(l *level) int {
		closeItem(l)
		return l.setOps + max(l.joins, l.maxJoins) + l.best
	}
	pop := func() {
		d := depthOf(&stack[len(stack)-1]) + 1
		stack = stack[:len(stack)-1]
		p := &stack[len(stack)-1]
		p.itemChild = max(p.itemChild, d)
	}
	ok := Lex(sql, func(k Kind, start, end int) {
		if k != Other {
			return
		}
		for i := start; i < end; {
			c := sql[i]
			top := &stack[len(stack)-1]
			switch {
			case c == '(' || c == '[':
				stack = append(stack, level{})
				i++
			case c == ')' || c == ']':
				// Up to the bracket's level (a CASE left open inside is closed with it).
				for len(stack) > 1 {
					wasCase := stack[len(stack)-1].isCase
					pop()
					if !wasCase {
						break
					}
				}
				i++
			case c == ',':
				closeItem(top)
				i++
			case c == ';':
				for len(stack) > 1 { // unbalanced: the parser refuses it, but count it all
					pop()
				}
				deepest = max(deepest, depthOf(&stack[0]))
				stack[0] = level{}
				i++
			case identStart(c):
				j := i + 1
				for j < end && identChar(sql[j]) {
					j++
				}
				switch w := strings.ToLower(sql[i:j]); {
				case w == "case":
					stack = append(stack, level{isCase: true})
				case w == "end" && top.isCase:
					pop()
				case (w == "when" || w == "then" || w == "else") && top.isCase:
					closeItem(top) // a CASE's branches are siblings
				case w == "between":
					top.item++
					top.between++
				case w == "and" && top.between > 0:
					top.between--
				case w == "and" || w == "or":
					closeItem(top)
				case w == "union" || w == "intersect" || w == "except":
					// The branches of a set operation are siblings: their joins do not nest.
					top.setOps++
					top.maxJoins, top.joins = max(top.maxJoins, top.joins), 0
					closeItem(top)
				case w == "join":
					top.joins++
				case nesting[w]:
					top.item++
				}
				i = j
			case opChar(c) || c == ':':
				// A level per character: PostgreSQL splits a run of + and - into prefix
				// operators one character each (+++1), and :: is one cast per pair.
				top.item++
				i++
			default:
				i++
			}
		}
	})
	if !ok {
		return 0, false
	}
	for len(stack) > 1 {
		pop()
	}
	return max(deepest, depthOf(&stack[0])), true
}

// nesting are the keywords that nest an expression in another.
var (
	nesting = map[string]bool{"not": true, "is": true, "isnull": true, "notnull": true, "like": true, "ilike": true,
		"similar": true, "in": true, "collate": true, "at": true, "overlaps": true, "escape": true, "operator": true}
)

func identStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// opChar: the characters of PostgreSQL's operators.
func opChar(c byte) bool { return strings.IndexByte("+-*/<>=~!@#%^&|`?", c) >= 0 }

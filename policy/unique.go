package policy

import (
	"slices"
	"unsafe"
)

// shortList is how long a list is scanned before it is indexed.
const shortList = 16

// sets makes "append unless present" cost constant time for long lists, so that an
// analysis is linear in the statement however many tables, functions or columns it
// names (a scan per append is quadratic: 4,000 names cost 120 ms, 600,000 an hour).
// A list's set is kept with the slice header it indexes; when the list was changed other
// than through addUnique (reset, reassigned), the set is rebuilt from it, so it never
// answers for another list's contents.
type sets struct {
	by map[any]*indexed
}

type indexed struct {
	set  any // map[T]struct{}
	data unsafe.Pointer
	n    int
}

// addUnique appends v to *l unless *l holds it already.
func addUnique[T comparable](s *sets, l *[]T, v T) {
	if len(*l) < shortList {
		if !slices.Contains(*l, v) {
			*l = append(*l, v)
		}
		return
	}
	ix := s.by[l]
	var set map[T]struct{}
	if ix != nil && ix.n == len(*l) && ix.data == unsafe.Pointer(unsafe.SliceData(*l)) {
		set = ix.set.(map[T]struct{})
	} else {
		set = make(map[T]struct{}, 2*len(*l))
		for _, x := range *l {
			set[x] = struct{}{}
		}
		if s.by == nil {
			s.by = map[any]*indexed{}
		}
		ix = &indexed{set: set}
		s.by[l] = ix
	}
	if _, ok := set[v]; !ok {
		set[v] = struct{}{}
		*l = append(*l, v)
	}
	ix.n, ix.data = len(*l), unsafe.Pointer(unsafe.SliceData(*l))
}

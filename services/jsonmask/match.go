package jsonmask

import "bytes"

// matcher runs every field's path at once over the keys and indexes leading to a value,
// as a set of positions (an NFA): position k is "steps[k] is the next step of its field".
type matcher struct {
	steps   []Step
	field   []int32 // position → field
	end     []int32 // position → the position after its field's last step
	init    []int32 // the positions at the top of each value of the stream
	root    int     // the first field whose path is $ alone, or -1
	maxName int     // the longest member name of any step
	stamp   []uint32
	gen     uint32
}

func newMatcher(fields []Field) matcher {
	m := matcher{root: -1}
	for f, fl := range fields {
		if len(fl.Path) == 0 {
			if m.root < 0 {
				m.root = f
			}
			continue
		}
		start := int32(len(m.steps))
		m.init = append(m.init, start)
		for _, st := range fl.Path {
			m.steps = append(m.steps, st)
			m.field = append(m.field, int32(f))
			if !st.Any && !st.IsIndex && len(st.Name) > m.maxName {
				m.maxName = len(st.Name)
			}
		}
		for range fl.Path {
			m.end = append(m.end, int32(len(m.steps)))
		}
	}
	m.stamp = make([]uint32, len(m.steps))
	return m
}

// keyLimit is the raw length past which a key cannot be any step's name: an escape takes
// at most six bytes (\uXXXX) per byte it stands for.
func (m *matcher) keyLimit() int { return 6*m.maxName + 6 }

// advance appends to st the positions of the child reached from the positions from by a
// key (obj) or an index, and returns the field whose path ends there (the first in order),
// or -1. long says the key is longer than any name (its bytes were not kept).
//
// A key with a NUL in it also stands for its text before the NUL: a reader in C (or
// anything that hands names on as C strings) takes "card_number\u0000x" for card_number.
func (m *matcher) advance(st, from []int32, obj bool, key []byte, long bool, idx int) ([]int32, int) {
	alt := key
	if obj && !long {
		if i := bytes.IndexByte(key, 0); i >= 0 {
			alt = key[:i]
		}
	}
	m.gen++
	if m.gen == 0 { // wrapped: old stamps could collide
		clear(m.stamp)
		m.gen = 1
	}
	match := -1
	add := func(st []int32, k int32) []int32 {
		if m.stamp[k] == m.gen {
			return st
		}
		m.stamp[k] = m.gen
		return append(st, k)
	}
	for _, k := range from {
		s := &m.steps[k]
		if s.Deep {
			st = add(st, k)
		}
		var ok bool
		switch {
		case s.Any:
			ok = true
		case s.IsIndex:
			ok = !obj && s.Index == idx
		default:
			ok = obj && !long && (string(key) == s.Name || string(alt) == s.Name)
		}
		if !ok {
			continue
		}
		if next := k + 1; next == m.end[k] {
			if f := int(m.field[k]); match < 0 || f < match {
				match = f
			}
		} else {
			st = add(st, next)
		}
	}
	return st, match
}

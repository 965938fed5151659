// Package pgtree walks pg_query parse trees: the policy's analysis and the PostgreSQL
// proxy's name resolution both visit every node of a statement.
package pgtree

import "google.golang.org/protobuf/reflect/protoreflect"

// Walk calls fn for m and every message below it (a pg_query parse tree, say).
func Walk(m protoreflect.Message, fn func(protoreflect.Message)) {
	fn(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				Walk(l.Get(i).Message(), fn)
			}
		case fd.IsMap():
		default:
			Walk(v.Message(), fn)
		}
		return true
	})
}

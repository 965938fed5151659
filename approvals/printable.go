package approvals

import "github.com/gatehouse/gatehouse/schemas"

// Printable is a statement as approvers are shown it (schemas.Printable).
func Printable(s string) string { return schemas.Printable(s) }

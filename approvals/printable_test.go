package approvals

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"update customers set name = 'x' where id = 1":    "update customers set name = 'x' where id = 1",
		"select 1;\n--\r update customers set name = 'x'": `select 1;` + "\n" + `--\r update customers set name = 'x'`,
		"select 'a\u202e' -- \u2066evil\u2069":            `select 'a\u202e' -- \u2066evil\u2069`,
		"select 'é', '日本'\tx":                             "select 'é', '日本'\tx",
		"a\x1b[2Jb\u200bc":                                `a\u001b[2Jb\u200bc`,
	} {
		require.Equal(t, want, Printable(in), "%q", in)
	}
}

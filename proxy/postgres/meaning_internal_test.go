package postgres

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// pinnedParams reads the options parameter as the backend does: every spelling of a
// client_encoding or standard_conforming_strings setting is caught.
func TestPinnedParams(t *testing.T) {
	for params, refused := range map[[2]string]bool{
		{"client_encoding", "SJIS"}:                                    true,
		{"client_encoding", "'sjis'"}:                                  true,
		{"client_encoding", "UTF8"}:                                    false,
		{"client_encoding", "utf-8"}:                                   false,
		{"client_encoding", "SQL_ASCII"}:                               false,
		{"standard_conforming_strings", "off"}:                         true,
		{"standard_conforming_strings", "on"}:                          false,
		{"options", "-c client_encoding=SJIS"}:                         true,
		{"options", "-cclient_encoding=BIG5"}:                          true,
		{"options", "--client-encoding=GBK"}:                           true,
		{"options", "--client_encoding=GBK"}:                           true,
		{"options", "-c search_path=x -c CLIENT_ENCODING=gb18030"}:     true,
		{"options", "-c standard_conforming_strings=off"}:              true,
		{"options", `-c application_name=a\ -c\ client_encoding=SJIS`}: false, // one escaped word: a name
		{"options", "-c search_path=public"}:                           false,
		{"options", "-c client_encoding=UTF8"}:                         false,
	} {
		err := pinnedParams(map[string]string{params[0]: params[1]})
		if refused {
			require.Error(t, err, "%v", params)
			require.Contains(t, err.Error(), "not supported through Gatehouse")
		} else {
			require.NoError(t, err, "%v", params)
		}
	}
	require.Equal(t, []option{{flag: "-c", value: "a=b c"}, {flag: "--x=y"}}, splitOptions(`-c a=b\ c  --x=y`))
}

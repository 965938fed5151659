package scp_test

import (
	"testing"

	"github.com/gatehouse/gatehouse/proxy/ssh/scp"
	"github.com/stretchr/testify/require"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		cmd  string
		want scp.Command
		ok   bool
	}{
		{"scp -t /tmp/x", scp.Command{Direction: "upload", Target: "/tmp/x"}, true},
		{"scp -f /tmp/x", scp.Command{Direction: "download", Target: "/tmp/x"}, true},
		// what OpenSSH 9's scp -O sends
		{"scp -r -p -d -t /tmp/cap/r2/", scp.Command{Direction: "upload", Target: "/tmp/cap/r2/", Recursive: true, Preserve: true, TargetIsDir: true}, true},
		{"scp -v -r -f -- -dash", scp.Command{Direction: "download", Target: "-dash", Recursive: true}, true},
		{"scp -rpt dir", scp.Command{Direction: "upload", Target: "dir", Recursive: true, Preserve: true}, true},
		{"scp  -t\t'my file'", scp.Command{Direction: "upload", Target: "my file"}, true},
		{`scp -t "a \"b\" c"`, scp.Command{Direction: "upload", Target: `a "b" c`}, true},
		{`scp -t a\ b`, scp.Command{Direction: "upload", Target: "a b"}, true},
		{"scp -t ~", scp.Command{Direction: "upload", Target: "."}, true},
		{"scp -t ~/docs/x", scp.Command{Direction: "upload", Target: "docs/x"}, true},
		{"scp -t '~/x'", scp.Command{Direction: "upload", Target: "~/x"}, true},
		{"scp -f /tmp/*.txt", scp.Command{Direction: "download", Target: "/tmp/*.txt", Glob: true}, true},
		{"scp -f '/tmp/*.txt'", scp.Command{Direction: "download", Target: "/tmp/*.txt"}, true},
		{"scp -f /t*p/x.txt", scp.Command{}, false},
		{"scp -t /tmp/*", scp.Command{}, false},
		{"scp -t ~root/x", scp.Command{}, false},
		{"scp -t", scp.Command{}, false},
		{"scp -t -f x", scp.Command{}, false},
		{"scp x", scp.Command{}, false},
		{"scp -t a b", scp.Command{}, false},
		{"scp -f /tmp/my file.txt", scp.Command{}, false},
		{"scp -t x; rm -rf /", scp.Command{}, false},
		{"scp -t $HOME", scp.Command{}, false},
		{`scp -t "$HOME"`, scp.Command{}, false},
		{"scp -t `id`", scp.Command{}, false},
		{"scp -t x > y", scp.Command{}, false},
		{"scp -t x | y", scp.Command{}, false},
		{"scp -t {a,b}", scp.Command{}, false},
		{"scp -t 'unterminated", scp.Command{}, false},
		{"scp -z -t x", scp.Command{}, false},
		{"/usr/bin/scp -t x", scp.Command{}, false},
		{"sudo scp -t x", scp.Command{}, false},
		{"scp -t ''", scp.Command{}, false},
		{"scp -t x\nid", scp.Command{}, false},
		{"scp -t x #c", scp.Command{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			got, ok := scp.ParseCommand(tt.cmd)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

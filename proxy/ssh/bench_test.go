package ssh_test

import (
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"
)

// The SSH benchmarks run the real clients against a real sshd, directly and through the
// gateway, in the same run (alternate them and compare medians; this machine is shared):
//
//	go test -run '^$' -bench BenchmarkSSH -benchtime 16x -count 3 ./proxy/ssh/
//
//   - scp: a 64 MiB file per iteration (16x: 1 GiB) with OpenSSH's scp, MB/s.
//   - echo: a keystroke's round trip through a terminal (cat echoing it), p50 and p99.
//   - sessions: 200 sessions open at once; the memory this process holds for them (heap
//     and goroutine stacks). The process runs the clients too: the direct run's figure is
//     the clients' share, the difference is the gateway's.

const benchFileBytes = 64 << 20

func BenchmarkSSH(b *testing.B) {
	e := start(b)
	keyFile, _ := e.certKey(b, ada, time.Now().Add(time.Hour))
	_, port, _ := net.SplitHostPort(e.addr)
	src := filepath.Join(b.TempDir(), "src.bin")
	buf := make([]byte, benchFileBytes)
	_, _ = rand.Read(buf)
	require.NoError(b, os.WriteFile(src, buf, 0o600))
	up := filepath.Join("/tmp/gh-up", "bench-"+strconv.FormatInt(time.Now().UnixNano(), 36)) // where the test policy lets sftp write
	require.NoError(b, os.MkdirAll(up, 0o755))
	b.Cleanup(func() { os.RemoveAll(up) })
	dst := filepath.Join(up, "dst.bin")
	direct := []string{"-P", e.sshd.Addr()[len("127.0.0.1:"):], "-F", "/dev/null", "-i", e.sshd.ClientKeyFile, "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + e.sshd.KnownHostsFile, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"}
	via := append([]string{"-P", port}, e.certArgs(keyFile)...)
	for _, path := range []struct {
		name, user string
		args       []string
	}{{"direct", "root", direct}, {"gateway", "web+root", via}} {
		b.Run("scp/"+path.name, func(b *testing.B) {
			b.SetBytes(benchFileBytes)
			for b.Loop() {
				out, errOut, code := run(b, "scp", append(slices.Clone(path.args), src, path.user+"@127.0.0.1:"+dst)...)
				require.Equal(b, 0, code, out+errOut)
			}
		})
	}

	dialDirect := func() (*gossh.Client, error) {
		return gossh.Dial("tcp", e.sshd.Addr(), e.sshd.ClientConfig("root"))
	}
	dialGateway := func() (*gossh.Client, error) {
		return gossh.Dial("tcp", e.addr, &gossh.ClientConfig{User: "web+root", Auth: []gossh.AuthMethod{gossh.Password(e.token)},
			HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second})
	}
	for _, path := range []struct {
		name string
		dial func() (*gossh.Client, error)
	}{{"direct", dialDirect}, {"gateway", dialGateway}} {
		b.Run("echo/"+path.name, func(b *testing.B) {
			c, err := path.dial()
			require.NoError(b, err)
			defer c.Close()
			s, err := c.NewSession()
			require.NoError(b, err)
			require.NoError(b, s.RequestPty("xterm", 24, 80, gossh.TerminalModes{gossh.ECHO: 1}))
			in, err := s.StdinPipe()
			require.NoError(b, err)
			out, err := s.StdoutPipe()
			require.NoError(b, err)
			require.NoError(b, s.Start("stty raw -echo; echo ready; cat"))
			waitFor(b, out, "ready")
			var lat []time.Duration
			one := make([]byte, 1)
			for b.Loop() {
				t0 := time.Now()
				_, err := in.Write([]byte{'k'})
				require.NoError(b, err)
				_, err = io.ReadFull(out, one)
				require.NoError(b, err)
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			s.Close()
		})
	}

	for _, path := range []struct {
		name string
		dial func() (*gossh.Client, error)
	}{{"direct", dialDirect}, {"gateway", dialGateway}} {
		b.Run("sessions200/"+path.name, func(b *testing.B) {
			for b.Loop() {
				before := memUse()
				var clients []*gossh.Client
				var mu sync.Mutex
				var wg sync.WaitGroup
				dialing := make(chan struct{}, 10) // within the gateway's unauthenticated limit
				for i := 0; i < 200; i++ {
					wg.Go(func() {
						dialing <- struct{}{}
						c, err := path.dial()
						<-dialing
						require.NoError(b, err)
						s, err := c.NewSession()
						require.NoError(b, err)
						out, err := s.StdoutPipe()
						require.NoError(b, err)
						require.NoError(b, s.Start("echo up; sleep 600"))
						waitFor(b, out, "up")
						mu.Lock()
						clients = append(clients, c)
						mu.Unlock()
					})
				}
				wg.Wait()
				b.ReportMetric(float64(memUse()-before)/200/1024, "KiB/session")
				for _, c := range clients {
					c.Close()
				}
			}
		})
	}
}

// memUse is what this process holds: heap in use and goroutine stacks, after a GC.
func memUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

func waitFor(b *testing.B, r io.Reader, s string) {
	b.Helper()
	var got []byte
	one := make([]byte, 1)
	for len(got) < len(s) || string(got[len(got)-len(s):]) != s {
		_, err := io.ReadFull(r, one)
		require.NoError(b, err)
		got = append(got, one[0])
	}
}

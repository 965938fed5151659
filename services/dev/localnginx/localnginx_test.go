package localnginx_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/dev/localnginx"
	"github.com/gatehouse/gatehouse/services/dev/localnginx/nginxtest"
)

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// Files: nginx's own static handling (length, ETag, conditional and Range requests) on a
// file of the test's.
func TestServesFiles(t *testing.T) {
	root := t.TempDir()
	doc := `{"customers":[{"id":1,"card_number":"4111 1111 1111 1111"}]}`
	require.NoError(t, os.WriteFile(filepath.Join(root, "customers.json"), []byte(doc), 0o644))
	n := nginxtest.Start(t, localnginx.Config{Root: root, Workers: 1})

	resp, body := get(t, n.URL+"/customers.json")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, doc, body)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.Equal(t, strconv.Itoa(len(doc)), resp.Header.Get("Content-Length"))
	etag := resp.Header.Get("Etag")
	require.NotEmpty(t, etag)

	resp, _ = get(t, n.URL+"/customers.json", "If-None-Match", etag)
	require.Equal(t, http.StatusNotModified, resp.StatusCode)
	resp, body = get(t, n.URL+"/customers.json", "Range", "bytes=0-9")
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	require.Equal(t, doc[:10], body)
	resp, _ = get(t, n.URL+"/missing.json")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	require.FileExists(t, filepath.Join(n.Dir, "nginx.pid"))
	require.FileExists(t, n.ErrorLog)
}

// Reverse proxy: requests reach the upstream over kept-alive connections, and with
// NoBuffering a response streams through as the upstream writes it.
func TestReverseProxy(t *testing.T) {
	release := make(chan struct{})
	var remotes = make(chan string, 100)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remotes <- r.RemoteAddr
		if r.URL.Path == "/stream" {
			io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "second\n")
			return
		}
		fmt.Fprintf(w, "%s %s host=%s", r.Method, r.URL.RequestURI(), r.Host)
	}))
	up.Start()
	t.Cleanup(up.Close)
	n := nginxtest.Start(t, localnginx.Config{ProxyTo: up.URL, NoBuffering: true, Workers: 1})

	resp, body := get(t, n.URL+"/orders/1?x=y")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "GET /orders/1?x=y host="+strings.TrimPrefix(up.URL, "http://"), body)
	first := <-remotes
	for i := 0; i < 5; i++ {
		get(t, n.URL+"/again")
		require.Equal(t, first, <-remotes, "nginx keeps its connection to the upstream")
	}

	resp, err := http.Get(n.URL + "/stream")
	require.NoError(t, err)
	defer resp.Body.Close()
	<-remotes
	buf := make([]byte, 64)
	k, err := io.ReadAtLeast(resp.Body, buf, len("first\n"))
	require.NoError(t, err)
	require.Equal(t, "first\n", string(buf[:k]), "the first part arrives before the upstream goes on")
	close(release)
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "second\n", string(rest))
}

// Stop leaves no nginx process: the master and its workers are gone.
func TestStopLeavesNoProcess(t *testing.T) {
	n := nginxtest.Start(t, localnginx.Config{Root: t.TempDir(), Workers: 2})
	pids := group(n.Pid())
	require.GreaterOrEqual(t, len(pids), 3, "a master and two workers")
	require.NoError(t, n.Stop())
	for _, pid := range pids {
		require.Eventually(t, func() bool { return gone(pid) }, 10*time.Second, 10*time.Millisecond, "process %d outlived Stop", pid)
	}
	require.NoError(t, n.Stop(), "a second Stop is harmless")
}

func TestConfigRefused(t *testing.T) {
	_, err := localnginx.Start(t.Context(), t.TempDir(), localnginx.Config{})
	require.Error(t, err)
	_, err = localnginx.Start(t.Context(), t.TempDir(), localnginx.Config{ProxyTo: "https://example.com"})
	if err != nil && !strings.Contains(err.Error(), "not installed") {
		require.ErrorContains(t, err, "not an http://host:port URL")
	}
}

// group lists the processes of the process group pgid, from /proc.
func group(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid {
			out = append(out, pid)
		}
	}
	return out
}

// gone: the process has exited (a zombie not yet reaped counts as gone).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

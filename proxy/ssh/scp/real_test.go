package scp_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/proxy/ssh/scp"
	"github.com/stretchr/testify/require"
)

// The test binary doubles as the ssh program of `scp -O -S <test binary>`:
// with SCP_RELAY_OUT set it runs the command (the last argument) with sh, as
// sshd would, and relays its stdin and stdout through a Stream the way the
// proxy does. Each run appends a record to SCP_RELAY_OUT.
func TestMain(m *testing.M) {
	if out := os.Getenv("SCP_RELAY_OUT"); out != "" {
		if err := relay(out, os.Args[len(os.Args)-1]); err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// record is what one relay run saw.
type record struct {
	Command string
	Parsed  scp.Command
	Ops     []scp.Op
	Files   []scp.File
	Err     string
	Chunks  []chunk // the bytes as read, for the fuzz corpus
}

// chunk is one piece of bytes as the relay read it.
type chunk struct {
	FromClient bool
	Data       []byte
}

func relay(out, command string) error {
	rec := record{Command: command}
	c, ok := scp.ParseCommand(command)
	if !ok {
		return fmt.Errorf("not an scp command: %q", command)
	}
	rec.Parsed = c
	var mu sync.Mutex // the client-bound writes and the record
	s := scp.NewStream(c, scp.Limits{}, func(op scp.Op) (bool, string) {
		mu.Lock()
		rec.Ops = append(rec.Ops, op)
		mu.Unlock()
		if strings.Contains(op.Path, "forbidden") {
			return false, ""
		}
		return true, ""
	})
	cmd := exec.Command("sh", "-c", command)
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if rec.Err == "" {
			rec.Err = err.Error()
		}
	}
	go func() {
		defer in.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := os.Stdin.Read(buf)
			if n > 0 {
				mu.Lock()
				rec.Chunks = append(rec.Chunks, chunk{FromClient: true, Data: append([]byte(nil), buf[:n]...)})
				mu.Unlock()
				fwd, reply, files, ferr := s.FromClient(buf[:n])
				mu.Lock()
				rec.Files = append(rec.Files, files...)
				os.Stdout.Write(reply)
				mu.Unlock()
				in.Write(fwd)
				if ferr != nil {
					fail(ferr)
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := outPipe.Read(buf)
		if n > 0 {
			mu.Lock()
			rec.Chunks = append(rec.Chunks, chunk{Data: append([]byte(nil), buf[:n]...)})
			fwd, files, ferr := s.FromServer(buf[:n])
			rec.Files = append(rec.Files, files...)
			os.Stdout.Write(fwd)
			mu.Unlock()
			if ferr != nil {
				fail(ferr)
				break
			}
		}
		if err != nil {
			break
		}
	}
	cmd.Wait()
	mu.Lock()
	defer mu.Unlock()
	rec.Files = append(rec.Files, s.Close()...)
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(b, '\n'))
	return err
}

// scpO runs OpenSSH's scp -O through the relay and returns the records of
// its ssh runs and its output.
func scpO(t *testing.T, args ...string) ([]record, string, error) {
	out := filepath.Join(t.TempDir(), "records.jsonl")
	self, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command("scp", append([]string{"-O", "-q", "-S", self}, args...)...)
	cmd.Env = append(os.Environ(), "SCP_RELAY_OUT="+out)
	output, runErr := cmd.CombinedOutput()
	b, err := os.ReadFile(out)
	require.NoError(t, err, "%s", output)
	var recs []record
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r record
		require.NoError(t, json.Unmarshal([]byte(line), &r))
		recs = append(recs, r)
	}
	return recs, string(output), runErr
}

func TestRealScp(t *testing.T) {
	if _, err := exec.LookPath("scp"); err != nil {
		t.Skip("no scp")
	}
	dir := t.TempDir()
	local, remote := filepath.Join(dir, "local"), filepath.Join(dir, "remote")
	for _, d := range []string{local, remote, filepath.Join(local, "tree", "sub"), filepath.Join(local, "tree", "forbidden-dir")} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	big := make([]byte, 3<<20+7)
	_, _ = rand.Read(big)
	files := map[string][]byte{
		"tree/a":                  []byte("a\n"),
		"tree/sub/big":            big,
		"tree/sub/empty":          {},
		"tree/forbidden-dir/x":    []byte("x"),
		"tree/forbidden-file.txt": []byte("secret"),
		"small.txt":               []byte("hello, gatehouse\n"),
	}
	for name, b := range files {
		require.NoError(t, os.WriteFile(filepath.Join(local, name), b, 0o644))
	}
	l := func(name string) string { return filepath.Join(local, name) }
	r := func(name string) string { return filepath.Join(remote, name) }

	type filev struct {
		Path, Alt, Direction, SHA256 string
		Size                         uint64
		Complete                     bool
	}
	view := func(recs []record) (out []filev) {
		for _, rec := range recs {
			require.Empty(t, rec.Err)
			for _, f := range rec.Files {
				out = append(out, filev{f.Path, f.Alt, f.Direction, f.SHA256, f.Size, f.Complete})
			}
		}
		return out
	}

	t.Run("recursive upload with refusals", func(t *testing.T) {
		recs, output, err := scpO(t, "-r", "-p", l("tree"), l("small.txt"), "host:"+remote+"/")
		require.Error(t, err, "scp exits 1 after a refusal")
		require.Contains(t, output, "permission denied by policy")
		require.Len(t, recs, 1)
		require.Equal(t, scp.Command{Direction: "upload", Target: remote + "/", Recursive: true, Preserve: true, TargetIsDir: true}, recs[0].Parsed)
		got := view(recs)
		require.ElementsMatch(t, []filev{
			{r("tree/a"), "", "upload", sha(files["tree/a"]), 2, true},
			{r("tree/sub/big"), "", "upload", sha(big), uint64(len(big)), true},
			{r("tree/sub/empty"), "", "upload", sha(nil), 0, true},
			{r("small.txt"), "", "upload", sha(files["small.txt"]), uint64(len(files["small.txt"])), true},
		}, got)
		for _, f := range []string{"tree/a", "tree/sub/big", "tree/sub/empty", "small.txt"} {
			b, err := os.ReadFile(r(f))
			require.NoError(t, err)
			require.Equal(t, files[f], b)
		}
		require.NoFileExists(t, r("tree/forbidden-file.txt"))
		require.NoDirExists(t, r("tree/forbidden-dir"))
	})

	t.Run("one file to a new name", func(t *testing.T) {
		recs, output, err := scpO(t, l("small.txt"), "host:"+r("renamed.txt"))
		require.NoError(t, err, output)
		require.Equal(t, []filev{{r("renamed.txt/small.txt"), r("renamed.txt"), "upload", sha(files["small.txt"]), uint64(len(files["small.txt"])), true}}, view(recs))
		require.FileExists(t, r("renamed.txt"))
	})

	t.Run("downloads", func(t *testing.T) {
		recs, output, err := scpO(t, "host:"+r("tree/sub/big"), l("big.back"))
		require.NoError(t, err, output)
		require.Equal(t, []filev{{r("tree/sub/big"), "", "download", sha(big), uint64(len(big)), true}}, view(recs))
		back, err := os.ReadFile(l("big.back"))
		require.NoError(t, err)
		require.Equal(t, big, back)

		recs, output, err = scpO(t, "-r", "host:"+r("tree"), l("tree.back"))
		require.NoError(t, err, output)
		require.ElementsMatch(t, []filev{
			{r("tree/a"), "", "download", sha(files["tree/a"]), 2, true},
			{r("tree/sub/big"), "", "download", sha(big), uint64(len(big)), true},
			{r("tree/sub/empty"), "", "download", sha(nil), 0, true},
		}, view(recs))

		recs, output, err = scpO(t, "host:"+remote+"/*.txt", l("globbed"))
		require.NoError(t, err, output)
		require.True(t, recs[0].Parsed.Glob)
		require.ElementsMatch(t, []filev{
			{r("small.txt"), "", "download", sha(files["small.txt"]), uint64(len(files["small.txt"])), true},
			{r("renamed.txt"), "", "download", sha(files["small.txt"]), uint64(len(files["small.txt"])), true},
		}, view(recs))

		recs, _, err = scpO(t, "host:"+r("missing"), l("missing"))
		require.Error(t, err)
		require.Empty(t, view(recs))
	})
}

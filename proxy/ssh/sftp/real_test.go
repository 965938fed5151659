package sftp_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	mrand "math/rand/v2"

	"github.com/gatehouse/gatehouse/proxy/ssh/sftp"
	"github.com/stretchr/testify/require"
)

// The test binary doubles as a recording relay between OpenSSH's sftp and
// sftp-server: `sftp -D "<test binary>"` runs it with SFTP_RELAY_OUT set, and
// it relays through a Stream the way the proxy does.
func TestMain(m *testing.M) {
	if out := os.Getenv("SFTP_RELAY_OUT"); out != "" {
		if err := relay(out, os.Getenv("SFTP_RELAY_SERVER")); err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// chunk is one piece of bytes as the relay read it.
type chunk struct {
	FromClient bool
	Data       []byte
}

// record is what the relay saw.
type record struct {
	Chunks []chunk
	Ops    []sftp.Op
	Files  []sftp.File
	Err    string
}

// refuseForbidden is the policy of the real-client tests.
func refuseForbidden(op sftp.Op) (bool, string) {
	if strings.Contains(op.Path, "forbidden") || strings.Contains(op.Target, "forbidden") {
		return false, "forbidden by the test policy"
	}
	return true, ""
}

func relay(out, server string) error {
	cmd := exec.Command(server)
	srvIn, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	srvOut, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	s := sftp.NewStream(sftp.Limits{}, refuseForbidden)
	var (
		mu  sync.Mutex // the client-bound writes and the record
		rec record
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if rec.Err == "" {
			rec.Err = err.Error()
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, err := srvOut.Read(buf)
			if n > 0 {
				mu.Lock()
				rec.Chunks = append(rec.Chunks, chunk{Data: append([]byte(nil), buf[:n]...)})
				fwd, files, ferr := s.FromServer(buf[:n])
				rec.Files = append(rec.Files, files...)
				os.Stdout.Write(fwd)
				mu.Unlock()
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
	buf := make([]byte, 64<<10)
	for {
		n, err := os.Stdin.Read(buf)
		if n > 0 {
			mu.Lock()
			rec.Chunks = append(rec.Chunks, chunk{FromClient: true, Data: append([]byte(nil), buf[:n]...)})
			mu.Unlock()
			fwd, reply, ops, cerr := s.FromClient(buf[:n])
			mu.Lock()
			rec.Ops = append(rec.Ops, ops...)
			os.Stdout.Write(reply)
			mu.Unlock()
			srvIn.Write(fwd)
			if cerr != nil {
				fail(cerr)
				break
			}
		}
		if err != nil {
			break
		}
	}
	srvIn.Close()
	<-done
	cmd.Wait()
	rec.Files = append(rec.Files, s.Close()...)
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o600)
}

func sftpServer(t *testing.T) string {
	for _, p := range []string{"/usr/lib/openssh/sftp-server", "/usr/lib/sftp-server", "/usr/libexec/sftp-server"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no sftp-server (apt-get install openssh-sftp-server)")
	return ""
}

// realRun is a real sftp session through the relay and what it did.
type realRun struct {
	record
	local, remote string
	big, small    []byte
	output        string
}

func realSession(t *testing.T, bigSize int) realRun {
	server := sftpServer(t)
	if _, err := exec.LookPath("sftp"); err != nil {
		t.Skip("no sftp client")
	}
	dir := t.TempDir()
	local, remote := filepath.Join(dir, "local"), filepath.Join(dir, "remote")
	require.NoError(t, os.Mkdir(local, 0o755))
	require.NoError(t, os.Mkdir(remote, 0o755))
	big := make([]byte, bigSize)
	_, _ = rand.Read(big)
	small := []byte("hello, gatehouse\n")
	require.NoError(t, os.WriteFile(filepath.Join(local, "big.bin"), big, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(local, "small.txt"), small, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(local, "empty"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(remote, "forbidden.txt"), small, 0o644))

	batch := strings.Join([]string{
		"cd " + remote,
		"put " + filepath.Join(local, "big.bin"),
		"put " + filepath.Join(local, "small.txt"),
		"put " + filepath.Join(local, "empty"),
		"-put " + filepath.Join(local, "small.txt") + " forbidden-upload.txt",
		"get big.bin " + filepath.Join(local, "big.back"),
		"-get forbidden.txt " + filepath.Join(local, "forbidden.back"),
		"mkdir d",
		"rename small.txt d/s.txt",
		"-rename d/s.txt forbidden2.txt",
		"rm d/s.txt",
		"rmdir d",
		"ln -s big.bin link",
		"ls -l",
		"",
	}, "\n")
	batchFile := filepath.Join(dir, "batch")
	require.NoError(t, os.WriteFile(batchFile, []byte(batch), 0o644))
	out := filepath.Join(dir, "record.json")
	self, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command("sftp", "-b", batchFile, "-D", self)
	cmd.Env = append(os.Environ(), "SFTP_RELAY_OUT="+out, "SFTP_RELAY_SERVER="+server)
	output, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", output)

	run := realRun{local: local, remote: remote, big: big, small: small, output: string(output)}
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &run.record))
	require.Empty(t, run.Err)
	return run
}

func TestRealClientAndServer(t *testing.T) {
	// pipelined 32 KiB writes and reads, a short last one
	run := realSession(t, 1<<20+12345)
	rec, local, remote, big, small, output := run.record, run.local, run.remote, run.big, run.small, run.output

	// The real transfer worked, and what was refused did not happen.
	back, err := os.ReadFile(filepath.Join(local, "big.back"))
	require.NoError(t, err)
	require.Equal(t, big, back)
	require.NoFileExists(t, filepath.Join(remote, "forbidden-upload.txt"))
	require.NoFileExists(t, filepath.Join(local, "forbidden.back"))
	require.Contains(t, output, `forbidden-upload.txt": Permission denied`)
	require.NoDirExists(t, filepath.Join(remote, "d"))
	link, err := os.Readlink(filepath.Join(remote, "link"))
	require.NoError(t, err)
	require.Equal(t, "big.bin", link)

	r := func(name string) string { return filepath.Join(remote, name) }
	type opv struct{ Kind, Path, Target string }
	var decided []opv
	for _, op := range rec.Ops {
		if op.Kind == sftp.KindStat || op.Kind == sftp.KindRealpath || op.Kind == sftp.KindList {
			continue // the client stats and resolves around everything
		}
		decided = append(decided, opv{op.Kind, op.Path, op.Target})
		require.Equal(t, !strings.Contains(op.Path+op.Target, "forbidden"), op.Allowed, "%+v", op)
	}
	require.Equal(t, []opv{
		{"write", r("big.bin"), ""},
		{"write", r("small.txt"), ""},
		{"write", r("empty"), ""},
		{"write", r("forbidden-upload.txt"), ""},
		{"read", r("big.bin"), ""},
		{"mkdir", r("d"), ""},
		// A rename is also the write of where it lands and the removal of where it was;
		// the first refusal ends a request's decisions.
		{"rename", r("small.txt"), r("d/s.txt")},
		{"write", r("d/s.txt"), r("small.txt")},
		{"remove", r("small.txt"), ""},
		{"rename", r("d/s.txt"), r("forbidden2.txt")},
		{"remove", r("d/s.txt"), ""},
		{"rmdir", r("d"), ""},
		// What is written through a link lands at its target.
		{"symlink", r("link"), "big.bin"},
		{"write", r("big.bin"), r("link")},
	}, decided)

	type filev struct {
		Path, Direction, SHA256   string
		Size                      uint64
		Sequential, EOF, Complete bool
	}
	var files []filev
	for _, f := range rec.Files {
		files = append(files, filev{f.Path, f.Direction, f.SHA256, f.Size, f.Sequential, f.EOF, f.Complete})
	}
	require.Equal(t, []filev{
		{r("big.bin"), "upload", sha(big), uint64(len(big)), true, false, true},
		{r("small.txt"), "upload", sha(small), uint64(len(small)), true, false, true},
		{r("empty"), "upload", sha(nil), 0, true, false, true},
		{r("big.bin"), "download", sha(big), uint64(len(big)), true, true, true},
	}, files)

	// The same bytes fed again in other pieces give the same result.
	rng := mrand.New(mrand.NewPCG(3, 4))
	for _, max := range []int{1, 7, 300, 100000} {
		s := sftp.NewStream(sftp.Limits{}, refuseForbidden)
		var ops []sftp.Op
		var got []sftp.File
		var toServer, toClient []byte
		for _, c := range rec.Chunks {
			for _, p := range pieces(rng, c.Data, max) {
				if c.FromClient {
					fwd, reply, o, err := s.FromClient(p)
					require.NoError(t, err)
					ops = append(ops, o...)
					toServer = append(toServer, fwd...)
					toClient = append(toClient, reply...)
				} else {
					fwd, f, err := s.FromServer(p)
					require.NoError(t, err)
					got = append(got, f...)
					toClient = append(toClient, fwd...)
				}
			}
		}
		got = append(got, s.Close()...)
		require.Equal(t, rec.Ops, ops, "pieces of at most %d", max)
		require.Equal(t, rec.Files, got, "pieces of at most %d", max)
		_, _ = io.Discard.Write(toServer)
	}
}

// OpenSSH 9's scp speaks SFTP unless given -O: the same relay, as its ssh.
func TestRealScpOverSFTP(t *testing.T) {
	server := sftpServer(t)
	if _, err := exec.LookPath("scp"); err != nil {
		t.Skip("no scp")
	}
	dir := t.TempDir()
	content := make([]byte, 200000)
	_, _ = rand.Read(content)
	src := filepath.Join(dir, "up.bin")
	require.NoError(t, os.WriteFile(src, content, 0o644))
	self, err := os.Executable()
	require.NoError(t, err)
	for i, args := range [][]string{
		{src, "host:" + filepath.Join(dir, "copy.bin")},
		{src, "host:" + filepath.Join(dir, "forbidden.bin")},
		{"host:" + filepath.Join(dir, "copy.bin"), filepath.Join(dir, "back.bin")},
	} {
		out := filepath.Join(dir, fmt.Sprintf("record%d.json", i))
		cmd := exec.Command("scp", append([]string{"-q", "-S", self}, args...)...)
		cmd.Env = append(os.Environ(), "SFTP_RELAY_OUT="+out, "SFTP_RELAY_SERVER="+server)
		output, err := cmd.CombinedOutput()
		var rec record
		b, rerr := os.ReadFile(out)
		require.NoError(t, rerr, "%s", output)
		require.NoError(t, json.Unmarshal(b, &rec))
		require.Empty(t, rec.Err)
		switch i {
		case 0:
			require.NoError(t, err, "%s", output)
			require.Len(t, rec.Files, 1)
			require.Equal(t, sftp.File{Open: rec.Files[0].Open, Path: filepath.Join(dir, "copy.bin"), Direction: sftp.Upload, Size: uint64(len(content)), SHA256: sha(content), Sequential: true, Complete: true}, rec.Files[0])
		case 1:
			require.Error(t, err)
			require.Empty(t, rec.Files)
			require.NoFileExists(t, filepath.Join(dir, "forbidden.bin"))
		case 2:
			require.NoError(t, err, "%s", output)
			require.Len(t, rec.Files, 1)
			require.Equal(t, sftp.File{Open: rec.Files[0].Open, Path: filepath.Join(dir, "copy.bin"), Direction: sftp.Download, Size: uint64(len(content)), SHA256: sha(content), Sequential: true, EOF: true, Complete: true}, rec.Files[0])
		}
	}
}

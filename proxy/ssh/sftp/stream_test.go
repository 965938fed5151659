package sftp_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/proxy/ssh/sftp"
	"github.com/stretchr/testify/require"
)

// session drives a Stream the way the proxy does.
type session struct {
	t       *testing.T
	s       *sftp.Stream
	toSrv   []byte
	toCli   []byte
	replies []byte
	ops     []sftp.Op
	files   []sftp.File
}

func newSession(t *testing.T, limits sftp.Limits, decide sftp.DecideFunc) *session {
	ss := &session{t: t, s: sftp.NewStream(limits, decide)}
	ss.client(pkt(tInit, 3))
	ss.server(pkt(tVersion, 3))
	ss.toSrv, ss.toCli = nil, nil
	return ss
}

func (ss *session) clientErr(b []byte) error {
	fwd, rep, ops, err := ss.s.FromClient(b)
	ss.toSrv = append(ss.toSrv, fwd...)
	ss.replies = append(ss.replies, rep...)
	ss.ops = append(ss.ops, ops...)
	return err
}

func (ss *session) serverErr(b []byte) error {
	fwd, files, err := ss.s.FromServer(b)
	ss.toCli = append(ss.toCli, fwd...)
	ss.files = append(ss.files, files...)
	return err
}

func (ss *session) client(b []byte) { require.NoError(ss.t, ss.clientErr(b)) }
func (ss *session) server(b []byte) { require.NoError(ss.t, ss.serverErr(b)) }

func allow(sftp.Op) (bool, string) { return true, "" }

func TestUploadAndDownloadHashes(t *testing.T) {
	content := []byte(strings.Repeat("gatehouse ", 5000))
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		ss := newSession(t, sftp.Limits{}, allow)
		var cli, srv [][]byte
		// upload in two writes
		cli = append(cli, pkt(tOpen, 1, "/up/f", 0x1a, attrs{}))
		srv = append(srv, pkt(tHandle, 1, "h1"))
		cli = append(cli, cat(pkt(tWrite, 2, "h1", uint64(0), content[:30000]), pkt(tWrite, 3, "h1", uint64(30000), content[30000:])))
		srv = append(srv, cat(status(2, 0), status(3, 0)))
		cli = append(cli, pkt(tClose, 4, "h1"))
		srv = append(srv, status(4, 0))
		// download in two reads, then EOF
		cli = append(cli, pkt(tOpen, 5, "/down/f", 0x01, attrs{}))
		srv = append(srv, pkt(tHandle, 5, "h1"))
		cli = append(cli, cat(pkt(tRead, 6, "h1", uint64(0), 32768), pkt(tRead, 7, "h1", uint64(32768), 32768), pkt(tRead, 8, "h1", uint64(65536), 32768)))
		srv = append(srv, cat(pkt(tData, 6, content[:32768]), pkt(tData, 7, content[32768:]), status(8, 1)))
		// As OpenSSH does after a short read: ask again from where it ended.
		cli = append(cli, pkt(tRead, 10, "h1", uint64(len(content)), 32768))
		srv = append(srv, status(10, 1))
		cli = append(cli, pkt(tClose, 9, "h1"))
		srv = append(srv, status(9, 0))
		for i := range cli {
			for _, p := range pieces(r, cli[i], 1+round*round*50) {
				ss.client(p)
			}
			for _, p := range pieces(r, srv[i], 1+round*round*50) {
				ss.server(p)
			}
		}
		require.Equal(t, cat(cli...), ss.toSrv, "everything allowed is forwarded as it came")
		require.Equal(t, cat(srv...), ss.toCli)
		require.Empty(t, ss.replies)
		require.Len(t, ss.files, 2)
		up, down := ss.files[0], ss.files[1]
		require.Equal(t, sftp.File{Open: up.Open, Path: "/up/f", Direction: sftp.Upload, Size: uint64(len(content)), SHA256: sha(content), Sequential: true, Complete: true}, up)
		require.Equal(t, sftp.KindWrite, up.Open.Kind)
		require.Equal(t, sftp.File{Open: down.Open, Path: "/down/f", Direction: sftp.Download, Size: uint64(len(content)), SHA256: sha(content), Sequential: true, EOF: true, Complete: true}, down)
		require.Equal(t, sftp.KindRead, down.Open.Kind)
		require.Empty(t, ss.s.Close())
	}
}

func TestRefusalAnswersWithTheSameID(t *testing.T) {
	var asked []sftp.Op
	ss := newSession(t, sftp.Limits{}, func(op sftp.Op) (bool, string) {
		asked = append(asked, op)
		if strings.HasPrefix(op.Path, "/etc") {
			return false, "no /etc for you"
		}
		return true, ""
	})
	ok := pkt(tStat, 7, "/home/u")
	ss.client(cat(pkt(tRemove, 42, "/etc/passwd"), ok))
	require.Equal(t, ok, ss.toSrv, "only the allowed request is forwarded")
	require.Equal(t, pkt(tStatus, 42, 3, "no /etc for you", ""), ss.replies)
	require.Len(t, ss.ops, 2)
	require.Equal(t, sftp.Op{Seq: 1, ID: 42, Kind: sftp.KindRemove, Path: "/etc/passwd", Message: "no /etc for you"}, ss.ops[0])
	require.Equal(t, sftp.Op{Seq: 2, ID: 7, Kind: sftp.KindStat, Path: "/home/u", Allowed: true}, ss.ops[1])
	require.Len(t, asked, 2)
	require.False(t, asked[0].Allowed, "Decide sees the operation, not an outcome")

	// The refused id was never outstanding: a response to it is a violation,
	// and the client may use it again.
	ss.client(pkt(tStat, 42, "/tmp"))
	ss.server(pkt(tAttrs, 7, attrs{}))

	// No message: the default.
	ss2 := newSession(t, sftp.Limits{}, func(sftp.Op) (bool, string) { return false, "" })
	ss2.client(pkt(tMkdir, 1, "/x", attrs{}))
	require.Equal(t, pkt(tStatus, 1, 3, "permission denied by policy", ""), ss2.replies)
}

func TestDecisions(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
		want []sftp.Op // Seq and ID left out
	}{
		{"open read", pkt(tOpen, 1, "f", 0x01, attrs{}), []sftp.Op{{Kind: "read", Path: "f"}}},
		{"open write create truncate", pkt(tOpen, 1, "f", 0x1a, attrs{}), []sftp.Op{{Kind: "write", Path: "f"}}},
		{"open read write", pkt(tOpen, 1, "f", 0x03, attrs{}), []sftp.Op{{Kind: "read", Path: "f"}, {Kind: "write", Path: "f"}}},
		// sftp-server opens O_RDONLY|O_CREAT: it creates and can be read.
		{"open create only", pkt(tOpen, 1, "f", 0x08, attrs{}), []sftp.Op{{Kind: "read", Path: "f"}, {Kind: "write", Path: "f"}}},
		{"open append", pkt(tOpen, 1, "f", 0x06, attrs{}), []sftp.Op{{Kind: "write", Path: "f"}}},
		{"open no flags", pkt(tOpen, 1, "f", 0, attrs{}), []sftp.Op{{Kind: "read", Path: "f"}}},
		{"lstat", pkt(tLstat, 1, "p"), []sftp.Op{{Kind: "stat", Path: "p"}}},
		{"stat", pkt(tStat, 1, "p"), []sftp.Op{{Kind: "stat", Path: "p"}}},
		{"setstat", pkt(tSetstat, 1, "p", uint32(4), uint32(0o4755)), []sftp.Op{{Kind: "setstat", Path: "p"}}},
		{"opendir", pkt(tOpendir, 1, "d"), []sftp.Op{{Kind: "list", Path: "d"}}},
		{"remove", pkt(tRemove, 1, "p"), []sftp.Op{{Kind: "remove", Path: "p"}}},
		{"mkdir", pkt(tMkdir, 1, "d", attrs{}), []sftp.Op{{Kind: "mkdir", Path: "d"}}},
		{"rmdir", pkt(tRmdir, 1, "d"), []sftp.Op{{Kind: "rmdir", Path: "d"}}},
		{"realpath", pkt(tRealpath, 1, "."), []sftp.Op{{Kind: "realpath", Path: "."}}},
		{"readlink", pkt(tReadlink, 1, "l"), []sftp.Op{{Kind: "readlink", Path: "l"}}},
		// A rename is decided as the write of where it lands and the removal of where it was.
		{"rename", pkt(tRename, 1, "a", "b"), []sftp.Op{{Kind: "rename", Path: "a", Target: "b"}, {Kind: "write", Path: "b", Target: "a"}, {Kind: "remove", Path: "a"}}},
		// OpenSSH: target first, then the link created.
		// What is written through a link lands at its target (relative: from the link's directory).
		{"symlink", pkt(tSymlink, 1, "/etc/shadow", "link"), []sftp.Op{{Kind: "symlink", Path: "link", Target: "/etc/shadow"}, {Kind: "write", Path: "/etc/shadow", Target: "link"}}},
		{"relative symlink", pkt(tSymlink, 1, "../../etc", "/srv/up/l"), []sftp.Op{{Kind: "symlink", Path: "/srv/up/l", Target: "../../etc"}, {Kind: "write", Path: "/etc", Target: "/srv/up/l"}}},
		{"posix-rename", pkt(tExtended, 1, "posix-rename@openssh.com", "a", "b"), []sftp.Op{{Kind: "rename", Path: "a", Target: "b", Ext: "posix-rename@openssh.com"},
			{Kind: "write", Path: "b", Target: "a", Ext: "posix-rename@openssh.com"}, {Kind: "remove", Path: "a", Ext: "posix-rename@openssh.com"}}},
		{"hardlink", pkt(tExtended, 1, "hardlink@openssh.com", "/etc/shadow", "x"), []sftp.Op{{Kind: "write", Path: "x", Target: "/etc/shadow", Ext: "hardlink@openssh.com"}, {Kind: "write", Path: "/etc/shadow", Target: "x", Ext: "hardlink@openssh.com"}}},
		{"statvfs", pkt(tExtended, 1, "statvfs@openssh.com", "/"), []sftp.Op{{Kind: "stat", Path: "/", Ext: "statvfs@openssh.com"}}},
		{"lsetstat", pkt(tExtended, 1, "lsetstat@openssh.com", "l", attrs{}), []sftp.Op{{Kind: "setstat", Path: "l", Ext: "lsetstat@openssh.com"}}},
		{"expand-path", pkt(tExtended, 1, "expand-path@openssh.com", "~/x"), []sftp.Op{{Kind: "realpath", Path: "~/x", Ext: "expand-path@openssh.com"}}},
		{"home-directory", pkt(tExtended, 1, "home-directory", "root"), []sftp.Op{{Kind: "realpath", Path: "~root", Ext: "home-directory"}}},
		{"unknown extended", pkt(tExtended, 1, "evil@example.com", "whatever"), []sftp.Op{{Kind: "other", Ext: "evil@example.com"}}},
		{"limits", pkt(tExtended, 1, "limits@openssh.com"), nil},
		{"users-groups-by-id", pkt(tExtended, 1, "users-groups-by-id@openssh.com", "", ""), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := newSession(t, sftp.Limits{}, allow)
			ss.client(tt.pkt)
			require.Equal(t, tt.pkt, ss.toSrv)
			var got []sftp.Op
			for _, op := range ss.ops {
				require.Equal(t, uint32(1), op.ID)
				require.True(t, op.Allowed)
				op.Seq, op.ID, op.Allowed = 0, 0, false
				got = append(got, op)
			}
			require.Equal(t, tt.want, got)
		})
	}
}

// open opens path with pflags through ss and binds handle h.
func (ss *session) open(id uint32, path string, pflags uint32, h string) {
	ss.client(pkt(tOpen, id, path, pflags, attrs{}))
	ss.server(pkt(tHandle, id, h))
}

func TestHandleOperations(t *testing.T) {
	t.Run("fsetstat is decided on the handle's path", func(t *testing.T) {
		ss := newSession(t, sftp.Limits{}, func(op sftp.Op) (bool, string) { return op.Kind != sftp.KindSetstat, "" })
		ss.open(1, "/f", 0x01, "h")
		ss.client(pkt(tFsetstat, 2, "h", uint32(4), uint32(0o6777)))
		require.Equal(t, pkt(tStatus, 2, 3, "permission denied by policy", ""), ss.replies)
		require.Equal(t, sftp.Op{Seq: 2, ID: 2, Kind: "setstat", Path: "/f"}, ss.ops[1])
	})
	t.Run("unknown handles and wrong directions are refused without asking", func(t *testing.T) {
		ss := newSession(t, sftp.Limits{}, allow)
		ss.open(1, "/r", 0x01, "r")
		ss.open(2, "/w", 0x1a, "w")
		ss.client(pkt(tOpendir, 3, "/d"))
		ss.server(pkt(tHandle, 3, "d"))
		before := len(ss.toSrv)
		ss.client(cat(
			pkt(tRead, 10, "nope", uint64(0), 10),
			pkt(tWrite, 11, "r", uint64(0), "x"),
			pkt(tRead, 12, "w", uint64(0), 10),
			pkt(tReaddir, 13, "r"),
			pkt(tRead, 14, "d", uint64(0), 10),
			pkt(tClose, 15, "nope"),
			pkt(tFstat, 16, "nope"),
		))
		require.Len(t, ss.toSrv, before, "nothing forwarded")
		require.Equal(t, cat(
			pkt(tStatus, 10, 4, "unknown handle", ""),
			pkt(tStatus, 11, 3, "handle not opened for writing", ""),
			pkt(tStatus, 12, 3, "handle not opened for reading", ""),
			pkt(tStatus, 13, 4, "handle is not a directory", ""),
			pkt(tStatus, 14, 4, "handle is a directory", ""),
			pkt(tStatus, 15, 4, "unknown handle", ""),
			pkt(tStatus, 16, 4, "unknown handle", ""),
		), ss.replies)
		require.Len(t, ss.ops, 3, "only the opens were decided")
	})
	t.Run("read and write on one handle", func(t *testing.T) {
		ss := newSession(t, sftp.Limits{}, allow)
		ss.open(1, "/rw", 0x03, "h")
		ss.client(pkt(tWrite, 2, "h", uint64(0), "abc"))
		ss.server(status(2, 0))
		ss.client(pkt(tRead, 3, "h", uint64(0), 100))
		ss.server(pkt(tData, 3, "abc"))
		ss.client(pkt(tClose, 4, "h"))
		ss.server(status(4, 0))
		require.Len(t, ss.files, 2)
		require.Equal(t, sftp.Upload, ss.files[0].Direction)
		require.Equal(t, sftp.KindWrite, ss.files[0].Open.Kind)
		require.Equal(t, sha([]byte("abc")), ss.files[0].SHA256)
		require.Equal(t, sftp.Download, ss.files[1].Direction)
		require.Equal(t, sftp.KindRead, ss.files[1].Open.Kind)
		require.Equal(t, sha([]byte("abc")), ss.files[1].SHA256)
		require.False(t, ss.files[1].EOF)
	})
	t.Run("out of order and failed writes", func(t *testing.T) {
		ss := newSession(t, sftp.Limits{}, allow)
		ss.open(1, "/w", 0x1a, "h")
		ss.client(cat(pkt(tWrite, 2, "h", uint64(3), "def"), pkt(tWrite, 3, "h", uint64(0), "abc")))
		ss.server(cat(status(3, 0), status(2, 4)))
		ss.client(pkt(tClose, 4, "h"))
		ss.server(status(4, 0))
		require.Equal(t, []sftp.File{{Open: ss.files[0].Open, Path: "/w", Direction: sftp.Upload, Size: 6, SHA256: sha([]byte("defabc"))}}, ss.files)
	})
	t.Run("short reads and a failed close", func(t *testing.T) {
		ss := newSession(t, sftp.Limits{}, allow)
		ss.open(1, "/r", 0x01, "h")
		ss.client(cat(pkt(tRead, 2, "h", uint64(0), 10), pkt(tRead, 3, "h", uint64(10), 10)))
		ss.server(cat(pkt(tData, 2, "12345"), pkt(tData, 3, "abc")))
		ss.client(pkt(tClose, 4, "h"))
		ss.server(status(4, 4))
		require.Len(t, ss.files, 1)
		require.False(t, ss.files[0].Sequential, "a gap from 5 to 10")
		require.False(t, ss.files[0].Complete)
		require.Equal(t, uint64(8), ss.files[0].Size)
	})
	t.Run("handles still open at the end", func(t *testing.T) {
		ss := newSession(t, sftp.Limits{}, allow)
		ss.open(1, "/a", 0x1a, "h1")
		ss.open(2, "/b", 0x01, "h2")
		ss.client(pkt(tWrite, 3, "h1", uint64(0), "x"))
		ss.client(pkt(tClose, 4, "h1")) // never answered
		files := ss.s.Close()
		require.Len(t, files, 2)
		require.Equal(t, "/a", files[0].Path)
		require.Equal(t, uint64(1), files[0].Size)
		require.False(t, files[0].Complete)
		require.Equal(t, "/b", files[1].Path)
		require.Equal(t, sftp.Download, files[1].Direction)
	})
	t.Run("a handle string is reused after its close", func(t *testing.T) {
		ss := newSession(t, sftp.Limits{}, allow)
		ss.open(1, "/a", 0x01, "h")
		ss.client(pkt(tClose, 2, "h"))
		ss.server(status(2, 0))
		ss.open(3, "/b", 0x01, "h")
		ss.client(pkt(tClose, 4, "h"))
		ss.server(status(4, 0))
		require.Len(t, ss.files, 2)
		require.Equal(t, "/b", ss.files[1].Path)
	})
}

func TestViolations(t *testing.T) {
	big := strings.Repeat("a", 5000)
	tests := []struct {
		name   string
		limits sftp.Limits
		client [][]byte
		server [][]byte
		want   error
		msg    string
	}{
		{name: "packet length under 5", client: [][]byte{{0, 0, 0, 4, 3, 0, 0, 0}}, want: sftp.ErrProtocol, msg: "shorter than"},
		{name: "packet too long", client: [][]byte{{0, 0x10, 0, 0}}, want: sftp.ErrLimit, msg: "exceeds the limit"},
		{name: "configured packet limit", limits: sftp.Limits{MaxPacket: 100}, client: [][]byte{pkt(tWrite, 1, "h", uint64(0), strings.Repeat("x", 100))}, want: sftp.ErrLimit},
		{name: "truncated string", client: [][]byte{pkt(tOpen, 1)}, want: sftp.ErrProtocol, msg: "truncated"},
		{name: "string past the end", client: [][]byte{append(pkt(tRemove, 1), 0, 0, 0, 9, 'a')}, want: sftp.ErrProtocol},
		{name: "NUL in a path", client: [][]byte{pkt(tRemove, 1, "/home/u/ok\x00/../../etc/passwd")}, want: sftp.ErrProtocol, msg: "NUL"},
		{name: "path too long", client: [][]byte{pkt(tRemove, 1, big)}, want: sftp.ErrLimit},
		{name: "configured path limit", limits: sftp.Limits{MaxPath: 3}, client: [][]byte{pkt(tRename, 1, "abc", "abcd")}, want: sftp.ErrLimit},
		{name: "too many outstanding", limits: sftp.Limits{MaxPending: 2}, client: [][]byte{pkt(tStat, 1, "a"), pkt(tStat, 2, "a"), pkt(tStat, 3, "a")}, want: sftp.ErrLimit, msg: "outstanding"},
		{name: "id reused while outstanding", client: [][]byte{pkt(tStat, 1, "a"), pkt(tStat, 1, "b")}, want: sftp.ErrProtocol, msg: "reused"},
		{name: "too many handles", limits: sftp.Limits{MaxHandles: 1}, client: [][]byte{pkt(tOpen, 1, "a", 1, attrs{}), pkt(tOpen, 2, "b", 1, attrs{})}, server: [][]byte{pkt(tHandle, 1, "h1"), pkt(tHandle, 2, "h2")}, want: sftp.ErrLimit, msg: "handles"},
		{name: "second INIT", client: [][]byte{pkt(tInit, 3)}, want: sftp.ErrProtocol},
		{name: "answer to nothing", server: [][]byte{status(9, 0)}, want: sftp.ErrProtocol, msg: "not outstanding"},
		{name: "handle for a stat", client: [][]byte{pkt(tStat, 1, "a")}, server: [][]byte{pkt(tHandle, 1, "h")}, want: sftp.ErrProtocol},
		{name: "handle too long", client: [][]byte{pkt(tOpen, 1, "a", 1, attrs{})}, server: [][]byte{pkt(tHandle, 1, strings.Repeat("h", 257))}, want: sftp.ErrProtocol},
		{name: "duplicate handle", client: [][]byte{pkt(tOpen, 1, "a", 1, attrs{}), pkt(tOpen, 2, "b", 1, attrs{})}, server: [][]byte{pkt(tHandle, 1, "h"), pkt(tHandle, 2, "h")}, want: sftp.ErrProtocol},
		{name: "more data than asked", client: [][]byte{pkt(tOpen, 1, "a", 1, attrs{}), pkt(tRead, 2, "h", uint64(0), 2)}, server: [][]byte{pkt(tHandle, 1, "h"), pkt(tData, 2, "abc")}, want: sftp.ErrProtocol},
		{name: "data for a stat", client: [][]byte{pkt(tStat, 1, "a")}, server: [][]byte{pkt(tData, 1, "abc")}, want: sftp.ErrProtocol},
		{name: "unknown response type", client: [][]byte{pkt(tStat, 1, "a")}, server: [][]byte{pkt(150, 1)}, want: sftp.ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := newSession(t, tt.limits, allow)
			var err error
			for i := 0; err == nil && (i < len(tt.client) || i < len(tt.server)); i++ {
				if i < len(tt.client) {
					err = ss.clientErr(tt.client[i])
				}
				if err == nil && i < len(tt.server) {
					err = ss.serverErr(tt.server[i])
				}
			}
			require.ErrorIs(t, err, tt.want)
			require.Contains(t, err.Error(), tt.msg)
			// Broken for good, in both directions.
			_, _, _, err2 := ss.s.FromClient(nil)
			require.Error(t, err2)
			_, _, err3 := ss.s.FromServer(nil)
			require.Error(t, err3)
		})
	}
}

func TestVersionNegotiation(t *testing.T) {
	s := sftp.NewStream(sftp.Limits{}, allow)
	_, _, _, err := s.FromClient(pkt(tStat, 1, "a"))
	require.ErrorIs(t, err, sftp.ErrProtocol, "a request before INIT")

	s = sftp.NewStream(sftp.Limits{}, allow)
	fwd, _, _, err := s.FromClient(pkt(tInit, 6, "ext", "data"))
	require.NoError(t, err)
	require.Equal(t, pkt(tInit, 6, "ext", "data"), fwd, "INIT passes whatever version the client asks")
	_, _, err = s.FromServer(pkt(tVersion, 6))
	require.ErrorIs(t, err, sftp.ErrProtocol)
	require.Contains(t, err.Error(), "version 6")

	s = sftp.NewStream(sftp.Limits{}, allow)
	_, _, _, err = s.FromClient(pkt(tInit, 3))
	require.NoError(t, err)
	_, _, err = s.FromServer(status(1, 0))
	require.ErrorIs(t, err, sftp.ErrProtocol, "a response before VERSION")

	s = sftp.NewStream(sftp.Limits{}, allow)
	_, _, _, err = s.FromClient(pkt(tInit, 3))
	require.NoError(t, err)
	fwd, _, err = s.FromServer(pkt(tVersion, 3, "limits@openssh.com", "1"))
	require.NoError(t, err)
	require.NotEmpty(t, fwd)
	require.Equal(t, uint32(3), s.Version())
	_, _, err = s.FromServer(pkt(tVersion, 3))
	require.True(t, errors.Is(err, sftp.ErrProtocol))
}

func TestServerPacketsAreForwardedWhole(t *testing.T) {
	ss := newSession(t, sftp.Limits{}, allow)
	ss.client(pkt(tStat, 1, "a"))
	p := pkt(tAttrs, 1, attrs{})
	fwd, _, err := ss.s.FromServer(p[:6])
	require.NoError(t, err)
	require.Empty(t, fwd, "a partial packet is held, so a refusal can go in between")
	fwd, _, err = ss.s.FromServer(p[6:])
	require.NoError(t, err)
	require.Equal(t, p, fwd)
}

func TestResponsesFlowWhileDecideWaits(t *testing.T) {
	release := make(chan struct{})
	asking := make(chan struct{})
	s := sftp.NewStream(sftp.Limits{}, func(op sftp.Op) (bool, string) {
		if op.Path == "/needs/approval" {
			close(asking)
			<-release // a person deciding
		}
		return true, ""
	})
	_, _, _, err := s.FromClient(cat(pkt(tInit, 3), pkt(tOpen, 1, "/a", 0x01, attrs{})))
	require.NoError(t, err)
	_, _, err = s.FromServer(cat(pkt(tVersion, 3), pkt(tHandle, 1, "h")))
	require.NoError(t, err)
	_, _, _, err = s.FromClient(pkt(tRead, 2, "h", uint64(0), 10))
	require.NoError(t, err)

	done := make(chan []byte)
	go func() {
		fwd, _, _, err := s.FromClient(pkt(tRemove, 3, "/needs/approval"))
		require.NoError(t, err)
		done <- fwd
	}()
	<-asking
	fwd, _, err := s.FromServer(pkt(tData, 2, "0123456789"))
	require.NoError(t, err, "the download goes on while policy waits")
	require.NotEmpty(t, fwd)
	close(release)
	require.Equal(t, pkt(tRemove, 3, "/needs/approval"), <-done)
}

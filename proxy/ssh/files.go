package ssh

import (
	"context"

	"github.com/gatehouse/gatehouse/proxy/ssh/sftp"
	"github.com/gatehouse/gatehouse/schemas"
)

// Files through a channel: the sftp subsystem (what scp, sftp and rsync over sftp speak)
// and the classic scp protocol (`scp -O`, an `scp -t`/`scp -f` exec). Each sftp operation
// is decided by policy, path by path, before it reaches the host (a refused one is
// answered by the gateway, with the reason); each file's path, direction, size and
// SHA-256 of its bytes are recorded as ssh.file. File contents are not recorded as frames.

// fileInspector looks into a channel that transfers files: it sees the client's bytes
// before the host does (and may answer a refused operation itself) and the host's answers
// (passed on in whole packets, so that its own answers never land inside one), and returns
// the files it saw go through.
type fileInspector interface {
	fromClient(p []byte) (forward, reply []byte, files []fileRecord, err error)
	fromHost(p []byte) (forward []byte, files []fileRecord, err error)
	close() []fileRecord
}

// fileRecord is one file that went through.
type fileRecord struct {
	via, path, direction, sha256 string
	size                         uint64
	sequential, complete         bool
}

func (f fileRecord) event(id uint64, channel uint32) *schemas.SshFile {
	return &schemas.SshFile{QueryID: id, Channel: channel, Via: f.via, Path: truncate(f.path, 4096), Direction: f.direction,
		Size: f.size, Sha256: f.sha256, Sequential: f.sequential, Complete: f.complete}
}

// sftpInspector is an sftp session's inspector.
type sftpInspector struct{ s *sftp.Stream }

// newSFTP inspects the sftp subsystem: each operation is recorded and decided (and held
// for approval when a rule asks) as a request of its own.
func (ch *channel) newSFTP(ctx context.Context) fileInspector {
	return &sftpInspector{s: sftp.NewStream(sftp.Limits{}, func(op sftp.Op) (bool, string) {
		q := ch.c.sess.OnRequest(ctx, func(id uint64) schemas.Payload {
			return &schemas.SshRequest{QueryID: id, Channel: ch.n, ChannelType: "session", Request: "sftp", SftpOp: op.Kind,
				Path: truncate(op.Path, 4096), Target: truncate(op.Target, 4096)}
		}, func(req *schemas.DecisionRequest) {
			req.SSH = &schemas.SSHRequest{Login: ch.c.t.login, Channel: "session", Request: "sftp", Subsystem: "sftp",
				SFTP: &schemas.SFTPOperation{Op: op.Kind, Path: op.Path, Target: op.Target}}
		})
		text := "sftp " + op.Kind + " " + op.Path
		if op.Target != "" {
			text += " → " + op.Target
		}
		msg, ok := ch.settle(ctx, q, "sftp "+op.Kind+" of "+op.Path, text)
		return ok, "gatehouse: " + msg
	})}
}

func (i *sftpInspector) fromClient(p []byte) ([]byte, []byte, []fileRecord, error) {
	fwd, reply, _, err := i.s.FromClient(p)
	return fwd, reply, nil, err
}

func (i *sftpInspector) fromHost(p []byte) ([]byte, []fileRecord, error) {
	fwd, files, err := i.s.FromServer(p)
	return fwd, sftpRecords(files), err
}

func (i *sftpInspector) close() []fileRecord { return sftpRecords(i.s.Close()) }

func sftpRecords(files []sftp.File) []fileRecord {
	var out []fileRecord
	for _, f := range files {
		out = append(out, fileRecord{via: "sftp", path: f.Path, direction: f.Direction, sha256: f.SHA256, size: f.Size,
			sequential: f.Sequential, complete: f.Complete})
	}
	return out
}

// newSCP inspects an exec that is the classic scp protocol's remote end; nil for any other
// command.
func (ch *channel) newSCP(ctx context.Context, cmd string) fileInspector { return nil }

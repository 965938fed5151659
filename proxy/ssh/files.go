package ssh

import (
	"context"

	"github.com/gatehouse/gatehouse/proxy/ssh/scp"
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
	via, path, alt, direction, sha256 string
	size                              uint64
	sequential, complete              bool
}

func (f fileRecord) event(id uint64, channel uint32) *schemas.SshFile {
	return &schemas.SshFile{QueryID: id, Channel: channel, Via: f.via, Path: truncate(f.path, 4096), AltPath: truncate(f.alt, 4096), Direction: f.direction,
		Size: f.size, Sha256: f.sha256, Sequential: f.sequential, Complete: f.complete}
}

// sftpInspector is an sftp session's inspector.
type sftpInspector struct{ s *sftp.Stream }

// newSFTP inspects the sftp subsystem: each operation is recorded and decided (and held
// for approval when a rule asks) as a request of its own.
func (ch *channel) newSFTP(ctx context.Context) fileInspector {
	return &sftpInspector{s: sftp.NewStream(sftp.Limits{}, func(op sftp.Op) (bool, string) {
		return ch.decideFile(ctx, op.Kind, op.Path, op.Target)
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

// decideFile decides one file operation of the sftp subsystem or of the classic scp
// protocol, recorded as a request of its own (request sftp: policy decides file operations
// by path whichever protocol carries them).
func (ch *channel) decideFile(ctx context.Context, kind, path, target string) (bool, string) {
	q := ch.c.sess.OnRequest(ctx, func(id uint64) schemas.Payload {
		return &schemas.SshRequest{QueryID: id, Channel: ch.n, ChannelType: "session", Request: "sftp", SftpOp: kind,
			Path: truncate(path, 4096), Target: truncate(target, 4096)}
	}, func(req *schemas.DecisionRequest) {
		req.SSH = &schemas.SSHRequest{Login: ch.c.t.login, Channel: "session", Request: "sftp",
			SFTP: &schemas.SFTPOperation{Op: kind, Path: path, Target: target}}
	})
	text := "sftp " + kind + " " + path
	if target != "" {
		text += " → " + target
	}
	msg, ok := ch.settle(ctx, q, kind+" of "+path, text)
	return ok, "gatehouse: " + msg
}

// scpInspector is the inspector of an `scp -t` (upload) or `scp -f` (download) exec.
type scpInspector struct{ s *scp.Stream }

// newSCP inspects an exec that is the classic scp protocol's remote end (`scp -O` on the
// client): each file and directory an upload creates is decided by its path before its
// content flows; nil for any other command (decided and relayed as a plain exec).
func (ch *channel) newSCP(ctx context.Context, cmd string) fileInspector {
	c, ok := scp.ParseCommand(cmd)
	if !ok {
		return nil
	}
	return &scpInspector{s: scp.NewStream(c, scp.Limits{}, func(op scp.Op) (bool, string) {
		return ch.decideFile(ctx, op.Kind, op.Path, "")
	})}
}

func (i *scpInspector) fromClient(p []byte) ([]byte, []byte, []fileRecord, error) {
	fwd, reply, files, err := i.s.FromClient(p)
	return fwd, reply, scpRecords(files), err
}

func (i *scpInspector) fromHost(p []byte) ([]byte, []fileRecord, error) {
	fwd, files, err := i.s.FromServer(p)
	return fwd, scpRecords(files), err
}

func (i *scpInspector) close() []fileRecord { return scpRecords(i.s.Close()) }

func scpRecords(files []scp.File) []fileRecord {
	var out []fileRecord
	for _, f := range files {
		// scp sends a file whole and in order: its hash is the content's.
		out = append(out, fileRecord{via: "scp", path: f.Path, alt: f.Alt, direction: f.Direction, sha256: f.SHA256, size: f.Size,
			sequential: true, complete: f.Complete})
	}
	return out
}

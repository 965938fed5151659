package query

import (
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"

	"github.com/gatehouse/gatehouse/schemas"
)

// The events of SSH sessions map to OCSF SSH Activity (class 4007, category 4 Network
// Activity), whose activities are the network ones: 1 Open, 2 Close, 3 Reset, 4 Fail,
// 5 Refuse, 6 Traffic, 99 Other. A whole session stays in the one class, so that a SIEM
// rule on SSH sees all of it:
//
//   - session.start: Open, with the client (src_endpoint), the resource (dst_endpoint) and
//     how the caller authenticated (auth_type_id)
//   - auth.failed: Refuse (Fail when the host could not be reached), with the reason
//   - session.terminated: Reset (the gateway ended it), session.end: Close, with its traffic
//   - ssh.request: Other ("Request"), the request in message; its outcome is its decision's
//   - decision: deny → Refuse (status Failure, the reason in status_detail); require_approval
//     → Other ("Hold", status Other); allow and mask → Other ("Allow", status Success)
//   - ssh.io, ssh.exit: Traffic, with the bytes each way (and the exit in message)
//   - ssh.file: Traffic with the file (path, size, SHA-256 when it is the content's): OCSF's
//     File Activity (1001) is for files on a device an agent watches, and Network File
//     Activity for file-sharing services; the file attribute of SSH Activity keeps the
//     transfer with its session
//
// Approval events keep their generic mapping.

// eventProtocol is the protocol of the session an event belongs to: known, else what the
// event says of itself ("" when it does not say).
func eventProtocol(typ string, payload map[string]any, known string) string {
	if known != "" {
		return known
	}
	switch typ {
	case schemas.TypeSshRequest, schemas.TypeSshIo, schemas.TypeSshExit, schemas.TypeSshFile:
		return "ssh"
	case schemas.TypeDbQuery, schemas.TypeDbBind, schemas.TypeDbResultChunk, schemas.TypeDbQueryDone:
		return "postgres"
	case schemas.TypeSessionStart, schemas.TypeAuthFailed:
		return str(payload["protocol"])
	case schemas.TypeKubeIo:
		return "kubernetes"
	case schemas.TypeHttpRequest:
		if payload["kube"] != nil {
			return "kubernetes"
		}
		return "http"
	case schemas.TypeHttpResponse, schemas.TypeHttpBody, schemas.TypeHttpWs, schemas.TypeHttpDone:
		return "http" // a Kubernetes session's are told by its session.start (export's protocols)
	}
	return ""
}

// OCSF status ids.
const (
	ocsfStatusUnknown = 0
	ocsfStatusSuccess = 1
	ocsfStatusFailure = 2
	ocsfStatusOther   = 99
)

// ocsfSSH maps an event of an SSH session, or returns nil for the generic mapping.
func ocsfSSH(e *schemas.Event, payload map[string]any) map[string]any {
	var rec map[string]any
	ssh := func(activity int, name string, status int) map[string]any {
		rec = ocsfBase(e, payload, ocsfSSHActivity, activity, name, status)
		rec["dst_endpoint"] = map[string]any{"name": e.Resource, "svc_name": "ssh"}
		return rec
	}
	switch e.Type {
	case schemas.TypeSessionStart:
		var p schemas.SessionStart
		if e.Decode(&p) != nil {
			return nil
		}
		ssh(1, "Open", ocsfStatusSuccess)
		setSrc(rec, p.ClientAddr)
		id, caption := sshAuthType(p.AuthMethod)
		rec["auth_type_id"], rec["auth_type"] = id, caption
		rec["message"] = fmt.Sprintf("%s logged in to %s as %s (%s)", actorName(&e.Identity), e.Resource, p.Login, p.AuthMethod)
		if v, ok := strings.CutPrefix(p.ApplicationName, "SSH-"); ok {
			rec["protocol_ver"], _, _ = strings.Cut(v, "-")
		}
	case schemas.TypeAuthFailed:
		var p schemas.AuthFailed
		if e.Decode(&p) != nil {
			return nil
		}
		if p.Check == "backend" {
			ssh(4, "Fail", ocsfStatusFailure)
		} else {
			ssh(5, "Refuse", ocsfStatusFailure)
		}
		setSrc(rec, p.ClientAddr)
		rec["status_detail"] = p.Check + ": " + p.Message
	case schemas.TypeSessionTerminated:
		var p schemas.SessionTerminated
		if e.Decode(&p) != nil {
			return nil
		}
		ssh(3, "Reset", ocsfStatusSuccess)
		rec["status_detail"] = strings.TrimSpace(p.Cause + " " + p.Revocation + " " + p.Reason)
	case schemas.TypeSessionEnd:
		var p schemas.SessionEnd
		if e.Decode(&p) != nil {
			return nil
		}
		status := ocsfStatusSuccess
		if p.Error != "" {
			status = ocsfStatusFailure
		}
		ssh(2, "Close", status)
		rec["traffic"] = traffic(p.BytesIn, p.BytesOut)
		rec["status_detail"] = strings.TrimSpace(p.Reason + " " + p.Error)
		rec["duration"] = p.DurationUS / 1000
	case schemas.TypeSshRequest:
		var p schemas.SshRequest
		if e.Decode(&p) != nil {
			return nil
		}
		ssh(99, "Request", ocsfStatusUnknown)
		rec["message"] = fmt.Sprintf("request %d on channel %d: %s", p.QueryID, p.Channel, SSHRequestText(&p))
	case schemas.TypeDecision:
		var p schemas.Decision
		if e.Decode(&p) != nil {
			return nil
		}
		switch p.Effect {
		case "deny":
			ssh(5, "Refuse", ocsfStatusFailure)
		case "require_approval":
			ssh(99, "Hold", ocsfStatusOther)
		default:
			ssh(99, "Allow", ocsfStatusSuccess)
		}
		rec["status_detail"] = strings.TrimSpace(p.Reason)
		rec["message"] = fmt.Sprintf("request %d: %s by %s", p.QueryID, p.Effect, decidedBy(&p))
	case schemas.TypeSshIo:
		var p schemas.SshIo
		if e.Decode(&p) != nil {
			return nil
		}
		ssh(6, "Traffic", ocsfStatusSuccess)
		rec["traffic"] = termTraffic(p.Frames)
	case schemas.TypeSshExit:
		var p schemas.SshExit
		if e.Decode(&p) != nil {
			return nil
		}
		ssh(6, "Traffic", ocsfStatusSuccess)
		rec["traffic"] = traffic(p.BytesIn, p.BytesOut)
		rec["duration"] = p.DurationUS / 1000
		how := p.Ended
		switch p.Ended {
		case "exited":
			how = "exited with status " + strconv.FormatUint(uint64(p.ExitStatus), 10)
		case "signal":
			how = "killed by signal " + p.ExitSignal
		}
		rec["message"] = fmt.Sprintf("channel %d (request %d) %s", p.Channel, p.QueryID, how)
	case schemas.TypeSshFile:
		var p schemas.SshFile
		if e.Decode(&p) != nil {
			return nil
		}
		ssh(6, "Traffic", ocsfStatusSuccess)
		if !p.Complete {
			rec["status_id"] = ocsfStatusFailure
			rec["status_detail"] = "transfer cut off"
		}
		f := map[string]any{"name": path.Base(p.Path), "path": p.Path, "size": p.Size, "type_id": 1}
		if p.Sequential && p.Sha256 != "" {
			// Only then is it the file's content's hash (else of the bytes as they passed).
			f["hashes"] = []map[string]any{{"algorithm_id": 3, "algorithm": "SHA-256", "value": p.Sha256}}
		}
		rec["file"] = f
		if p.Direction == "upload" {
			rec["traffic"] = traffic(p.Size, 0)
		} else {
			rec["traffic"] = traffic(0, p.Size)
		}
		rec["message"] = fmt.Sprintf("%s %s via %s, %d bytes", p.Direction, p.Path, p.Via, p.Size)
	default:
		return nil
	}
	return rec
}

// decidedBy names the rule that made a decision: policy/rule, or the default deny.
func decidedBy(p *schemas.Decision) string {
	if p.Rule == "" {
		return "default deny"
	}
	return p.Policy + "/" + p.Rule
}

// sshAuthType is OCSF's auth_type_id and caption for how the caller authenticated: a
// gateway-signed certificate is Certificate Based; a token, sent as a password or a
// keyboard-interactive answer, is Other ("Token").
func sshAuthType(method string) (int, string) {
	switch method {
	case "certificate":
		return 1, "Certificate Based"
	case "":
		return 0, "Unknown"
	case "token":
		return 99, "Token"
	}
	return 99, method
}

func setSrc(rec map[string]any, addr string) {
	if addr == "" {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		rec["src_endpoint"] = map[string]any{"ip": addr}
		return
	}
	src := map[string]any{"ip": host}
	if n, err := strconv.Atoi(port); err == nil {
		src["port"] = n
	}
	rec["src_endpoint"] = src
}

// termTraffic is the traffic of terminal frames: typed input in, output and stderr out.
func termTraffic(frames []schemas.TermFrame) map[string]any {
	var in, out uint64
	for _, f := range frames {
		switch f.Code {
		case "i":
			in += uint64(len(f.Data))
		case "o", "e":
			out += uint64(len(f.Data))
		}
	}
	return traffic(in, out)
}

// traffic is OCSF's network traffic: bytes_in from the client, bytes_out to it.
func traffic(in, out uint64) map[string]any {
	return map[string]any{"bytes_in": in, "bytes_out": out, "bytes": in + out}
}

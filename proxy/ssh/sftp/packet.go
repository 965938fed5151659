package sftp

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Packet types of SFTP version 3.
const (
	fxpInit          = 1
	fxpVersion       = 2
	fxpOpen          = 3
	fxpClose         = 4
	fxpRead          = 5
	fxpWrite         = 6
	fxpLstat         = 7
	fxpFstat         = 8
	fxpSetstat       = 9
	fxpFsetstat      = 10
	fxpOpendir       = 11
	fxpReaddir       = 12
	fxpRemove        = 13
	fxpMkdir         = 14
	fxpRmdir         = 15
	fxpRealpath      = 16
	fxpStat          = 17
	fxpRename        = 18
	fxpReadlink      = 19
	fxpSymlink       = 20
	fxpStatus        = 101
	fxpHandle        = 102
	fxpData          = 103
	fxpName          = 104
	fxpAttrs         = 105
	fxpExtended      = 200
	fxpExtendedReply = 201
)

// Status codes of SFTP version 3.
const (
	fxOK               = 0
	fxEOF              = 1
	fxPermissionDenied = 3
)

// OPEN pflags.
const (
	fxfRead   = 0x01
	fxfWrite  = 0x02
	fxfAppend = 0x04
	fxfCreat  = 0x08
	fxfTrunc  = 0x10
)

// ATTRS flags.
const (
	attrSize        = 0x00000001
	attrUIDGID      = 0x00000002
	attrPermissions = 0x00000004
	attrACModTime   = 0x00000008
	attrExtended    = 0x80000000
)

// maxHandleLen is the longest handle a server may return (the draft's limit).
const maxHandleLen = 256

// errMalformed is wrapped by every error about a packet that does not parse.
var errMalformed = fmt.Errorf("%w: malformed packet", ErrProtocol)

// decoder reads the fields of one packet body.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s truncated", errMalformed, what)
	}
}

func (d *decoder) u8(what string) byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u32(what string) uint32 {
	if d.err != nil || len(d.b) < 4 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64(what string) uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) bytes(what string) []byte {
	n := d.u32(what)
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: %s: length %d past the end of the packet", errMalformed, what, n)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(what string) string { return string(d.bytes(what)) }

// path reads a path and checks it against the limit. A NUL byte is refused:
// the server reads C strings, so it would act on a shorter path than the one
// policy saw (OpenSSH's sftp-server treats it as a fatal parse error).
func (d *decoder) path(what string, max int) string {
	p := d.bytes(what)
	if d.err != nil {
		return ""
	}
	if len(p) > max {
		d.err = fmt.Errorf("%w: %s of %d bytes exceeds the limit of %d", ErrLimit, what, len(p), max)
		return ""
	}
	s := string(p)
	if strings.IndexByte(s, 0) >= 0 {
		d.err = fmt.Errorf("%w: %s contains a NUL byte", errMalformed, what)
		return ""
	}
	return s
}

// attrs skips an ATTRS structure, checking that it is whole.
func (d *decoder) attrs() {
	flags := d.u32("attrs flags")
	if flags&attrSize != 0 {
		d.u64("attrs size")
	}
	if flags&attrUIDGID != 0 {
		d.u32("attrs uid")
		d.u32("attrs gid")
	}
	if flags&attrPermissions != 0 {
		d.u32("attrs permissions")
	}
	if flags&attrACModTime != 0 {
		d.u32("attrs atime")
		d.u32("attrs mtime")
	}
	if flags&attrExtended != 0 {
		n := d.u32("attrs extended count")
		for i := uint32(0); i < n && d.err == nil; i++ {
			d.bytes("attrs extended type")
			d.bytes("attrs extended data")
		}
	}
}

// statusPacket encodes an SSH_FXP_STATUS with an error message and an empty
// language tag.
func statusPacket(id, code uint32, msg string) []byte {
	body := 1 + 4 + 4 + 4 + len(msg) + 4
	b := make([]byte, 0, 4+body)
	b = binary.BigEndian.AppendUint32(b, uint32(body))
	b = append(b, fxpStatus)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, code)
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg)))
	b = append(b, msg...)
	b = binary.BigEndian.AppendUint32(b, 0)
	return b
}

// framer cuts a byte stream into whole packets. Bytes are copied only when a packet is
// split across pieces (its start is held until the rest comes); whole packets in a piece
// are looked at and forwarded where they are.
type framer struct {
	buf   []byte // the start of a packet whose rest has not come
	spare []byte // the other buffer: what a previous call's forward may still point into
	max   uint32
}

// packetAt returns the whole packet at the start of b (length field included), or nil when
// b does not hold all of it yet.
func (f *framer) packetAt(b []byte) ([]byte, error) {
	if len(b) < 4 {
		return nil, nil
	}
	n := binary.BigEndian.Uint32(b)
	if n > f.max {
		return nil, fmt.Errorf("%w: packet of %d bytes exceeds the limit of %d", ErrLimit, n, f.max)
	}
	if n < 5 {
		return nil, fmt.Errorf("%w: packet length %d is shorter than a type and an id", errMalformed, n)
	}
	if uint64(len(b)) < 4+uint64(n) {
		return nil, nil
	}
	return b[: 4+n : 4+n], nil
}

// frame takes the next piece of the stream and calls each for every packet it completes,
// in order; it returns the packets each asked to forward, back to back. forward points into
// p or into the framer's buffers: it is valid until the next call.
func (f *framer) frame(p []byte, each func(pkt []byte) (forward bool, err error)) (forward []byte, err error) {
	data := p
	if len(f.buf) > 0 {
		f.buf = append(f.buf, p...)
		data = f.buf
	}
	off := 0
	var ranges [][2]int
	for err == nil {
		var pkt []byte
		if pkt, err = f.packetAt(data[off:]); err != nil || pkt == nil {
			break
		}
		var fwd bool
		fwd, err = each(pkt)
		if fwd {
			if k := len(ranges) - 1; k >= 0 && ranges[k][1] == off {
				ranges[k][1] = off + len(pkt)
			} else {
				ranges = append(ranges, [2]int{off, off + len(pkt)})
			}
		}
		off += len(pkt)
	}
	switch len(ranges) {
	case 0:
	case 1:
		forward = data[ranges[0][0]:ranges[0][1]]
	default:
		for _, r := range ranges {
			forward = append(forward, data[r[0]:r[1]]...)
		}
	}
	// Keep the start of an incomplete packet, in the buffer forward does not point into.
	rest := data[off:]
	switch {
	case len(f.buf) > 0 && off == 0:
		// Nothing taken: the buffer holds the start of the same packet, as it is (a packet
		// fed a byte at a time is not copied again at each byte).
	case len(f.buf) > 0:
		f.spare, f.buf = f.buf, append(f.spare[:0], rest...)
	default:
		f.buf = append(f.buf[:0], rest...)
	}
	if len(f.buf) == 0 && cap(f.buf) > 64<<10 {
		f.buf = nil // an idle channel holds no large buffer
	}
	return forward, err
}

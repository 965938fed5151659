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

// framer cuts a byte stream into whole packets.
type framer struct {
	buf []byte
	max uint32
}

// next returns the next whole packet (length field included) from the
// buffered bytes, or nil when more bytes are needed.
func (f *framer) next() ([]byte, error) {
	if len(f.buf) < 4 {
		return nil, nil
	}
	n := binary.BigEndian.Uint32(f.buf)
	if n > f.max {
		return nil, fmt.Errorf("%w: packet of %d bytes exceeds the limit of %d", ErrLimit, n, f.max)
	}
	if n < 5 {
		return nil, fmt.Errorf("%w: packet length %d is shorter than a type and an id", errMalformed, n)
	}
	if uint64(len(f.buf)) < 4+uint64(n) {
		return nil, nil
	}
	p := f.buf[: 4+n : 4+n]
	f.buf = f.buf[4+n:]
	return p, nil
}

// feed appends bytes. The consumed front of the buffer is sliced off by
// next, so a packet fed one byte at a time costs no more than one fed whole.
func (f *framer) feed(p []byte) { f.buf = append(f.buf, p...) }

// compact releases the buffer once nothing is left in it.
func (f *framer) compact() {
	if len(f.buf) == 0 {
		f.buf = nil
	}
}

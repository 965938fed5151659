package postgres

import (
	"encoding/binary"
	"errors"
)

// The COPY sub-protocol. COPY FROM STDIN: the client's CopyData, CopyDone and CopyFail
// belong to a COPY statement decided as a whole at its Query, and go to the backend as
// they are (client loop). COPY TO STDOUT: the backend's CopyData lines are recorded, and
// masked first where the statement's results are (backend loop; the masking of a line is
// in masking.go).

// onCopyIn forwards the client's CopyData, CopyDone or CopyFail.
func (c *conn) onCopyIn(raw []byte) []byte { return raw }

// onCopyOutResponse starts a COPY TO STDOUT. Masked results are only sent as text: the
// proxy cannot mask binary COPY output, so it ends the session rather than send it.
func (c *conn) onCopyOutResponse(m *answer) error {
	if m.head == nil || m.head.mask == nil {
		return nil
	}
	if len(m.body) > 0 && m.body[0] != 0 {
		c.setReason("backend_error")
		c.writeClient(encode(pgError("ERROR", "0A000", "Gatehouse cannot mask binary COPY output; use text format", "")), true)
		c.closeBoth()
		return errors.New("binary COPY of masked results refused")
	}
	m.head.mask.copyOut = true
	return nil
}

// onCopyData records one line of COPY TO STDOUT, masked first when the statement's results
// are.
func (c *conn) onCopyData(m *answer) {
	if m.head == nil || m.head.res == nil {
		return
	}
	if m.head.mask != nil && m.head.mask.copyOut {
		m.raw = encodeCopyData(c.maskCopyLine(m.head.mask, m.head.res, m.body))
		m.body = m.raw[5:]
	}
	m.head.res.Row([][]byte{m.body})
}

// encodeCopyData is a CopyData message holding line.
func encodeCopyData(line []byte) []byte {
	b := make([]byte, 0, 5+len(line))
	b = append(b, 'd')
	b = binary.BigEndian.AppendUint32(b, uint32(4+len(line)))
	return append(b, line...)
}

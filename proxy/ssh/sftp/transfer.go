package sftp

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
)

// handle is an open handle the server returned to an OPEN or OPENDIR.
type handle struct {
	id       string
	seq      uint64 // the opening operation's, to order Close's records
	path     string
	dir      bool
	canRead  bool // the server opened it O_RDONLY or O_RDWR
	canWrite bool // the server opened it O_WRONLY or O_RDWR
	up       *transfer
	down     *transfer
	readOp   Op
	closed   bool // its CLOSE was answered: the records are out
}

// transfer hashes the bytes of one direction of one handle.
type transfer struct {
	op         Op
	h          hash.Hash
	size       uint64
	next       uint64 // the offset right after the last byte, while sequential
	sequential bool
	eof        bool
	failed     bool
}

func newTransfer(op Op) *transfer {
	return &transfer{op: op, h: sha256.New(), sequential: true}
}

// add hashes bytes that passed at offset.
func (t *transfer) add(offset uint64, data []byte) {
	if offset != t.next {
		t.sequential = false
	}
	t.h.Write(data)
	t.size += uint64(len(data))
	t.next = offset + uint64(len(data))
	if t.next < offset { // wrapped: no sane file is that long
		t.sequential = false
	}
}

// atEOF records an end-of-file answer to a READ at offset.
func (t *transfer) atEOF(offset uint64) {
	if offset == t.next {
		t.eof = true
	}
}

func (t *transfer) file(path, direction string, closedOK bool) File {
	return File{
		Open:       t.op,
		Path:       path,
		Direction:  direction,
		Size:       t.size,
		SHA256:     hex.EncodeToString(t.h.Sum(nil)),
		Sequential: t.sequential,
		EOF:        t.eof,
		Complete:   closedOK && !t.failed,
	}
}

// finish appends the handle's file records: the upload first, then the
// download.
func (h *handle) finish(files []File, closedOK bool) []File {
	if h.up != nil {
		files = append(files, h.up.file(h.path, Upload, closedOK))
	}
	if h.down != nil {
		files = append(files, h.down.file(h.path, Download, closedOK))
	}
	return files
}

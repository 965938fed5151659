package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// The spool's crash-safe half: a journal of append-only segment files in the spool
// directory, each allocated whole (fallocate) and mapped into memory, so that a record is a
// copy, not a system call. Every message is written to it before it is handed to JetStream, and a
// statement's events before its client learns that the statement is complete
// (Session.Durable). A write lands in the page cache, which outlives the process (kill -9,
// a panic, the OOM killer) though not the machine. A segment is removed once JetStream has
// acknowledged every record in it; at start, the segments a dead process left are published
// again before the process serves (the same events with the same ids: JetStream's
// duplicate window and the audit store keep one event per id).
//
// A record is a header — magic, body length, CRC-32C of the body — and a body: the
// subject (uint16 length), the first event's id (uint8 length) and the events as the
// message carries them (newline-separated JSON). Records are written one at a time, body
// first, header last, so a process that dies mid-write leaves at most its last record torn
// (or no header at all); the replay stops there. The rest of a segment is zeros.

const (
	journalMagic  = 0x31534847 // "GHS1", little-endian
	recordHeader  = 12
	segmentPrefix = "seg-"
	segmentSuffix = ".log"
	// segmentBytes is how large a segment grows before the next record opens another.
	segmentBytes = 8 << 20
	// maxRecordBody bounds a record read back: a message must fit in NATS's max_payload.
	maxRecordBody = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journal is the spool directory's segment files. A process holds the directory's lock
// for its lifetime: two proxies must never share one journal.
type journal struct {
	dir  string
	lock *os.File
	log  *slog.Logger

	mu      sync.Mutex // orders writes and rotation
	cur     *segment
	next    uint64 // the next segment's number
	segSize int64  // a segment's size (segmentBytes; tests make it smaller)
}

// segment is one file of the journal.
type segment struct {
	j       *journal
	path    string
	f       *os.File     // nil for a segment replayed from a previous process
	mem     []byte       // the file, mapped (MAP_SHARED: what is copied there outlives the process)
	size    int64        // bytes written (under j.mu)
	written atomic.Int64 // records written
	acked   atomic.Int64 // records JetStream has acknowledged
	sealed  atomic.Bool  // no record will be added
	gone    atomic.Bool  // removed
	removed func()       // called once removed (replay waits for it)
	unmap   sync.Once
}

// segRef counts records of one segment that a message carries.
type segRef struct {
	seg *segment
	n   int64
}

// openJournal locks dir (creating it, 0700) and returns the segments a previous process
// left there, oldest first, for replay.
func openJournal(dir string, log *slog.Logger) (*journal, []string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("audit spool directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("audit spool directory: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("audit spool directory %s is in use by another Gatehouse process (each proxy process needs its own audit.spool_dir)", dir)
		}
		return nil, nil, fmt.Errorf("audit spool directory %s: lock: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("audit spool directory: %w", err)
	}
	j := &journal{dir: dir, lock: lock, log: log, segSize: segmentBytes}
	var old []string
	for _, e := range entries {
		var n uint64
		if e.Type().IsRegular() && segmentNumber(e.Name(), &n) {
			old = append(old, filepath.Join(dir, e.Name()))
			j.next = max(j.next, n+1)
		}
	}
	slices.Sort(old) // fixed-width hex numbers: lexical order is write order
	return j, old, nil
}

func segmentNumber(name string, n *uint64) bool {
	hex, ok := strings.CutPrefix(name, segmentPrefix)
	if !ok {
		return false
	}
	if hex, ok = strings.CutSuffix(hex, segmentSuffix); !ok || len(hex) != 16 {
		return false
	}
	_, err := fmt.Sscanf(hex, "%016x", n)
	return err == nil
}

// write appends one record (its subject is prefix+typ) and returns its segment.
func (j *journal) write(prefix, typ string, id, data []byte) (*segment, error) {
	if len(prefix)+len(typ) > 0xffff || len(id) > 0xff {
		return nil, fmt.Errorf("audit spool: subject or id too long")
	}
	body := 2 + len(prefix) + len(typ) + 1 + len(id) + len(data)
	n := int64(recordHeader + body)
	j.mu.Lock()
	defer j.mu.Unlock()
	if n > j.segSize {
		return nil, fmt.Errorf("audit spool: a message of %d bytes is larger than a segment", n)
	}
	if j.cur == nil || j.cur.size+n > j.segSize {
		if err := j.rotateLocked(); err != nil {
			return nil, err
		}
	}
	s := j.cur
	if err := s.copyRecord(prefix, typ, id, data, body); err != nil {
		return nil, err
	}
	s.size += n
	s.written.Add(1)
	return s, nil
}

// copyRecord writes a record at the segment's end: body, then header. The segment's blocks
// are allocated, so the copy cannot run out of space; should the mapping fault anyway
// (the file truncated under us, an I/O error), the fault is an error, not a crash.
func (s *segment) copyRecord(prefix, typ string, id, data []byte, body int) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("audit spool: write %s: %v", s.path, r)
		}
	}()
	m := s.mem[s.size : s.size+int64(recordHeader+body)]
	b := m[recordHeader:]
	binary.LittleEndian.PutUint16(b, uint16(len(prefix)+len(typ)))
	k := 2
	k += copy(b[k:], prefix)
	k += copy(b[k:], typ)
	b[k] = byte(len(id))
	k++
	k += copy(b[k:], id)
	copy(b[k:], data)
	binary.LittleEndian.PutUint32(m[8:], crc32.Checksum(b, castagnoli))
	binary.LittleEndian.PutUint32(m[4:], uint32(body))
	binary.LittleEndian.PutUint32(m[0:], journalMagic) // last: the record is whole
	return nil
}

// rotateLocked seals the current segment and opens the next, its space allocated up front:
// a full disk is an error here, where it can be refused, never a fault in a copy.
func (j *journal) rotateLocked() error {
	path := filepath.Join(j.dir, fmt.Sprintf("%s%016x%s", segmentPrefix, j.next, segmentSuffix))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("audit spool: new segment: %w", err)
	}
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("audit spool: new segment %s: %w", path, err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, j.segSize); err != nil {
		return fail(fmt.Errorf("allocate %d bytes: %w", j.segSize, err))
	}
	// Written once with zeros: the blocks are then real, not "unwritten" extents, and the
	// pages in the page cache, so that the first write through the mapping to each page is
	// a cheap fault instead of one that maps blocks in the file system (on ext4 that was
	// most of a record's cost under load).
	if err := zeroFill(f, j.segSize); err != nil {
		return fail(err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, int(j.segSize), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return fail(fmt.Errorf("map: %w", err))
	}
	j.next++
	if prev := j.cur; prev != nil {
		prev.seal()
	}
	j.cur = &segment{j: j, path: path, f: f, mem: mem}
	return nil
}

var zeros = make([]byte, 1<<20)

func zeroFill(f *os.File, size int64) error {
	for off := int64(0); off < size; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), size-off)], off); err != nil {
			return fmt.Errorf("zero %d bytes: %w", size, err)
		}
	}
	return nil
}

// seal marks s complete; it is removed once every record in it is acknowledged. Nothing
// is written to it any more: its mapping goes now (what a message still waits for is in
// memory, and in the file for the next start), so that a spool that fills during a long
// outage does not hold every segment mapped into the process.
func (s *segment) seal() {
	s.sealed.Store(true)
	s.release()
	s.removeIfDone()
}

// ack counts n of s's records acknowledged by JetStream.
func (s *segment) ack(n int64) {
	s.acked.Add(n)
	s.removeIfDone()
}

func (s *segment) removeIfDone() {
	if !s.sealed.Load() || s.acked.Load() < s.written.Load() || !s.gone.CompareAndSwap(false, true) {
		return
	}
	s.release()
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.j.log.Warn("cannot remove an acknowledged audit spool segment", "segment", s.path, "err", err)
	}
	if s.removed != nil {
		s.removed()
	}
}

// release unmaps and closes the segment's file, once.
func (s *segment) release() {
	s.unmap.Do(func() {
		if s.mem != nil {
			_ = syscall.Munmap(s.mem)
			s.mem = nil
		}
		if s.f != nil {
			_ = s.f.Close()
		}
	})
}

// close seals the current segment (removed if everything in it was acknowledged; kept for
// the next start otherwise) and releases the directory.
func (j *journal) close() {
	j.mu.Lock()
	cur := j.cur
	j.cur = nil
	j.mu.Unlock()
	if cur != nil {
		cur.seal()
	}
	_ = j.lock.Close()
}

// record is one message read back from a segment.
type record struct {
	subject string
	id      string
	data    []byte
}

// readSegment reads the records of a segment a previous process left. A torn or corrupt
// record ends the reading: what follows it is reported as dropped bytes (the zeros of the
// segment's unused end are not).
func readSegment(path string) (recs []record, dropped int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("audit spool: %w", err)
	}
	for off := 0; off < len(b); {
		r, n, ok := parseRecord(b[off:])
		if !ok {
			rest := b[off:]
			if i := slices.IndexFunc(rest, func(c byte) bool { return c != 0 }); i < 0 {
				return recs, 0, nil
			}
			return recs, len(rest), nil
		}
		recs = append(recs, r)
		off += n
	}
	return recs, 0, nil
}

// parseRecord decodes the record at the start of b, copying what it keeps.
func parseRecord(b []byte) (record, int, bool) {
	if len(b) < recordHeader || binary.LittleEndian.Uint32(b) != journalMagic {
		return record{}, 0, false
	}
	n := int(binary.LittleEndian.Uint32(b[4:]))
	if n > maxRecordBody || len(b)-recordHeader < n {
		return record{}, 0, false
	}
	body := b[recordHeader : recordHeader+n]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[8:]) || len(body) < 3 {
		return record{}, 0, false
	}
	sl := int(binary.LittleEndian.Uint16(body))
	if len(body) < 2+sl+1 {
		return record{}, 0, false
	}
	subject := string(body[2 : 2+sl])
	il := int(body[2+sl])
	rest := body[2+sl+1:]
	if len(rest) < il || len(rest) == il {
		return record{}, 0, false
	}
	return record{subject: subject, id: string(rest[:il]), data: bytes.Clone(rest[il:])}, recordHeader + n, true
}

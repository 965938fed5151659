package http

import (
	"io"

	"github.com/gatehouse/gatehouse/proxy/mask"
)

// bodyMasker masks a response body as it streams.
type bodyMasker interface {
	// feed masks the next piece, appending what may go out now to out.
	feed(out, p []byte) ([]byte, error)
	// end appends what is held back: the body ended.
	end(out []byte) ([]byte, error)
}

// detectMasker runs the content detectors over a body that is not JSON.
type detectMasker struct {
	s   *mask.Stream
	rec *bodyRecorder
}

func (d *detectMasker) feed(out, p []byte) ([]byte, error) {
	m, n := d.s.Feed(p)
	d.rec.count("detectors", "", n)
	return append(out, m...), nil
}

func (d *detectMasker) end(out []byte) ([]byte, error) {
	m, n := d.s.Flush()
	d.rec.count("detectors", "", n)
	return append(out, m...), nil
}

// filter is a response body on its way to the client: masked, and recorded as it is read.
type filter struct {
	src io.ReadCloser
	m   bodyMasker // nil: passed as is
	rec *bodyRecorder
	buf []byte
	out []byte
	off int
	err error
}

func newFilter(src io.ReadCloser, rm *respMask, contentType string, rec *bodyRecorder) io.ReadCloser {
	f := &filter{src: src, rec: rec}
	if rm != nil {
		if isJSON(contentType) {
			f.m = newJSONMasker(rm, rec)
		} else {
			f.m = &detectMasker{s: mask.NewStream(rm.m), rec: rec}
		}
		f.buf = make([]byte, 32<<10)
	}
	return f
}

func (f *filter) Read(p []byte) (int, error) {
	if f.m == nil {
		n, err := f.src.Read(p)
		if n > 0 {
			f.rec.write(p[:n])
		}
		if err != nil && err != io.EOF {
			f.rec.fail(err)
		}
		return n, err
	}
	for f.off == len(f.out) {
		if f.err != nil {
			return 0, f.err
		}
		f.out, f.off = f.out[:0], 0
		n, err := f.src.Read(f.buf)
		if n > 0 {
			var merr error
			if f.out, merr = f.m.feed(f.out, f.buf[:n]); merr != nil {
				// Malformed JSON cannot be masked by path: the response is cut (fail closed).
				f.rec.fail(merr)
				f.err = merr
				f.out = f.out[:0]
				return 0, merr
			}
		}
		if err == io.EOF {
			var merr error
			if f.out, merr = f.m.end(f.out); merr != nil {
				f.rec.fail(merr)
				f.err = merr
				return 0, merr
			}
			f.err = io.EOF
		} else if err != nil {
			f.rec.fail(err)
			f.err = err
		}
	}
	n := copy(p, f.out[f.off:])
	f.rec.write(p[:n])
	f.off += n
	return n, nil
}

func (f *filter) Close() error { return f.src.Close() }

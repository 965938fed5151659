package http

import (
	"github.com/gatehouse/gatehouse/services/jsonmask"
)

// jsonMasker masks a JSON body (or a stream of JSON values: a watch) by field path, and
// runs the detectors over its other strings and numbers.
type jsonMasker struct {
	w   *jsonmask.Writer
	buf *appendWriter
	rec *bodyRecorder
}

// appendWriter collects what the jsonmask Writer emits.
type appendWriter struct{ b []byte }

func (a *appendWriter) Write(p []byte) (int, error) { a.b = append(a.b, p...); return len(p), nil }

func newJSONMasker(rm *respMask, rec *bodyRecorder) bodyMasker {
	spec := &jsonmask.Spec{Mask: func(method string, v []byte) []byte { return rm.m.Whole(method, v) }}
	for _, f := range rm.fields {
		p, err := jsonmask.ParsePath(f.Path)
		if err != nil {
			p = jsonmask.Path{} // validated with the policy; one that does not parse masks the whole body (fail closed)
		}
		spec.Fields = append(spec.Fields, jsonmask.Field{Path: p, Method: f.Method, Name: f.Path})
	}
	if rm.m.HasDetectors() {
		spec.Detect = rm.m.Detect
	}
	a := &appendWriter{}
	return &jsonMasker{w: jsonmask.NewWriter(a, spec), buf: a, rec: rec}
}

func (j *jsonMasker) feed(out, p []byte) ([]byte, error) {
	j.buf.b = out
	_, err := j.w.Write(p)
	j.count()
	return j.buf.b, err
}

func (j *jsonMasker) end(out []byte) ([]byte, error) {
	j.buf.b = out
	err := j.w.Close()
	j.count()
	return j.buf.b, err
}

func (j *jsonMasker) count() {
	for _, c := range j.w.TakeCounts() {
		j.rec.count(c.Name, c.Method, int(c.Count))
	}
}

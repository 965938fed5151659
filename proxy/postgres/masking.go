package postgres

import (
	"encoding/binary"
	"slices"

	"github.com/gatehouse/gatehouse/proxy/mask"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
)

// resultMask is the masking of one statement's results: the masker of its decision, and
// for each result column what to do with its values.
type resultMask struct {
	m    *mask.Masker
	plan []colPlan // nil until the columns are known
	// Execute: the prepared statement (its Describe gave the columns) and Bind's result
	// formats, for when no Describe of the portal precedes the rows.
	stmt    *session.Query
	formats []int16
	copyOut bool // COPY TO STDOUT in progress (text format)
	// outputs is the decision's plan (from the statement's lineage): for each statement of
	// the message, the result columns to mask. planned says there is one; index is the
	// statement whose results come now (a simple query may hold several).
	outputs [][]schemas.MaskedOutput
	planned bool
	opaque  []int
	index   int
	cat     *resourceCatalog
}

type colPlan struct {
	name   string
	method string // masking method, "" when the column is not masked as such
	by     string // the source column(s)
	whole  bool   // computed from a masked column: NULL is masked too
	text   bool   // a text-like type: masked as a string (other types: masked values become NULL)
	binary bool   // binary format
}

// methodRank orders masking methods from the least to the most hiding.
var methodRank = map[string]int{"": 0, mask.Partial: 1, mask.HMAC: 2, mask.Redact: 3}

// textTypes are the type OIDs whose values, in text or binary format, are the text itself.
var textTypes = map[uint32]bool{25: true, 1043: true, 1042: true, 19: true, 705: true, 114: true, 142: true, 18: true}

// newResultMask returns the masking for q's results, nil when its decision masks nothing.
// It fails only when the mask spec cannot be compiled (the statement is then refused).
func (c *conn) newResultMask(q *session.Query) (*resultMask, error) {
	spec := q.Decision.Mask
	if spec == nil || q.Decision.Effect != "mask" {
		return nil, nil
	}
	m, err := c.srv.masks.Get(spec)
	if err != nil {
		return nil, err
	}
	return &resultMask{m: m, outputs: spec.Outputs, planned: spec.Planned, opaque: spec.Opaque, cat: c.cat}, nil
}

// nextStatement moves to the results of the next statement of a simple query.
func (rm *resultMask) nextStatement() {
	rm.index++
	rm.plan = nil
}

// columnMethod is how result column i of the current statement is masked by the
// decision's plan: by its source columns' methods, or, without a plan for the statement,
// redacted whenever the decision masks any column (fail closed).
func (rm *resultMask) columnMethod(i int) (method, by string, whole bool) {
	if !rm.planned || rm.index >= len(rm.outputs) || slices.Contains(rm.opaque, rm.index) {
		if rm.m.HasColumns() {
			return mask.Redact, "no masking plan for this statement", true
		}
		return "", "", false
	}
	for _, o := range rm.outputs[rm.index] {
		if o.Column == i {
			return o.Method, o.By, o.Whole
		}
	}
	return "", "", false
}

// sensitive reports whether the current statement computes on masked columns: then what
// PostgreSQL says of it (an error, a notice) may quote their values.
func (rm *resultMask) sensitive() bool {
	if !rm.m.HasColumns() {
		return false
	}
	if !rm.planned || rm.index >= len(rm.outputs) || slices.Contains(rm.opaque, rm.index) {
		return true
	}
	return len(rm.outputs[rm.index]) > 0
}

// planFor decides the masking of each result column: the decision's plan, and as a second
// line the source column PostgreSQL reports for a bare column (its table OID and attribute
// number, named through the catalog); the strictest of the two wins. A reported source the
// catalog does not know (a table created since it was read) is masked whole when the
// decision masks columns.
func (c *conn) planFor(rm *resultMask, cols []schemas.Column) {
	plan := make([]colPlan, len(cols))
	for i, col := range cols {
		p := colPlan{name: col.Name, text: textTypes[col.TypeOID], binary: col.Format == 1}
		p.method, p.by, p.whole = rm.columnMethod(i)
		if rm.m.HasColumns() && col.TableOID != 0 {
			if col.Attnum == 0 {
				// A whole row of a table: masked whole when the table has a masked column.
				if rm.cat.anyMasked(col.TableOID, rm.m) {
					stricter(&p, mask.Redact, "a whole row of a table with masked columns")
					p.whole = true
				}
			} else if src, ok := rm.cat.column(col.TableOID, col.Attnum); !ok {
				stricter(&p, mask.Redact, "a source column missing from the catalog")
				p.whole = true
			} else if method, ok := rm.m.Column(src); ok {
				stricter(&p, method, src)
			}
		}
		plan[i] = p
	}
	rm.plan = plan
}

// stricter masks p with method when that hides more than what it has.
func stricter(p *colPlan, method, by string) {
	if methodRank[method] > methodRank[p.method] {
		p.method, p.by = method, by
	}
}

// maskRow masks the values of one DataRow in place and records the counts in res. It
// returns the DataRow to send: raw itself when nothing was masked.
func (c *conn) maskRow(rm *resultMask, res *session.Result, raw []byte, values [][]byte) []byte {
	if rm.plan == nil && rm.stmt != nil {
		if cols := c.described.get(rm.stmt); cols != nil {
			cols = append([]schemas.Column(nil), cols...)
			for i := range cols {
				cols[i].Format = formatOf(rm.formats, i)
			}
			c.planFor(rm, cols)
		}
	}
	changed := false
	for i, v := range values {
		var p colPlan
		if i < len(rm.plan) {
			p = rm.plan[i]
		} else {
			// Not described: the decision's plan alone (every column, without one).
			p.method, p.by, p.whole = rm.columnMethod(i)
		}
		if v == nil {
			if p.method != "" && p.whole && p.text {
				// NULL or not would answer whatever the expression asked of the column.
				values[i] = rm.m.Whole(mask.Redact, nil)
				changed = true
			}
			continue
		}
		switch {
		case p.method != "":
			if p.text {
				values[i] = rm.m.Whole(p.method, v)
			} else {
				values[i] = nil
			}
			changed = true
			if res != nil {
				res.Masked(i, p.name, p.by, p.method, 1)
			}
		case rm.m.HasDetectors():
			// Binary values of other types (records, arrays) hold their text fields as
			// they are: a detector's find there withholds the value.
			out, n := rm.m.Detect(v)
			if n == 0 {
				continue
			}
			if p.text {
				values[i] = out
			} else {
				values[i] = nil // a number that looks like a card: no masked form fits its type
			}
			changed = true
			if res != nil {
				res.Masked(i, p.name, "detectors", "", n)
			}
		}
	}
	if !changed {
		return raw
	}
	return encodeDataRow(values)
}

// maskCopyLine masks one line of COPY TO STDOUT text output: field i as the plan masks
// result column i (every field, without a plan, when the decision masks columns);
// detectors apply to every field.
func (c *conn) maskCopyLine(rm *resultMask, res *session.Result, line []byte) []byte {
	fields := splitCopy(line)
	changed := false
	for i, f := range fields {
		if string(f) == `\N` || string(f) == "\n" || len(f) == 0 {
			continue
		}
		nl := len(f) > 0 && f[len(f)-1] == '\n'
		body := f
		if nl {
			body = f[:len(f)-1]
		}
		var out []byte
		method, by, _ := rm.columnMethod(i)
		switch {
		case method != "":
			out = rm.m.Whole(method, body)
			if res != nil {
				res.Masked(i, "", by, method, 1)
			}
		case rm.m.HasDetectors():
			var n int
			if out, n = rm.m.Detect(body); n == 0 {
				continue
			}
			if res != nil {
				res.Masked(i, "", "detectors", "", n)
			}
		default:
			continue
		}
		if nl {
			out = append(out, '\n')
		}
		fields[i] = out
		changed = true
	}
	if !changed {
		return line
	}
	var out []byte
	for i, f := range fields {
		if i > 0 {
			out = append(out, '\t')
		}
		out = append(out, f...)
	}
	return out
}

func splitCopy(line []byte) [][]byte {
	var fields [][]byte
	start := 0
	for i, b := range line {
		if b == '\t' {
			fields = append(fields, line[start:i])
			start = i + 1
		}
	}
	return append(fields, line[start:])
}

func formatOf(formats []int16, i int) int16 {
	switch len(formats) {
	case 0:
		return 0
	case 1:
		return formats[0]
	}
	if i < len(formats) {
		return formats[i]
	}
	return 0
}

func encodeDataRow(values [][]byte) []byte {
	n := 4 + 2
	for _, v := range values {
		n += 4 + len(v)
	}
	b := make([]byte, 0, 1+n)
	b = append(b, 'D')
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = binary.BigEndian.AppendUint16(b, uint16(len(values)))
	for _, v := range values {
		if v == nil {
			b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

// Errors and notices can carry the values a masked statement reads: PostgreSQL quotes the
// offending value (`invalid input syntax for type integer: "ada@example.com"`, `value
// "4111111111111111" is out of range`) and a constraint's DETAIL shows the row. For a
// masked statement the proxy masks them before they reach the client or the trail: the
// content detectors run over every text field, and in the classes whose messages quote
// data (22 data exception, 23 integrity violation) every double-quoted part of the message
// is redacted and the detail withheld. Notices and errors raised by functions (RAISE) get
// the detectors.

// maskedNoticeFields are the fields of ErrorResponse/NoticeResponse that can hold data.
var maskedNoticeFields = []byte{'M', 'D', 'H', 'W', 'q'}

// withheldFields are the fields of an error or notice of a statement that computes on
// masked columns that are withheld whole: PostgreSQL quotes values in them, in every
// class (relation "4111..." does not exist, invalid byte sequence 0x41 0x11, ...).
var withheldFields = []byte{'M', 'D', 'H', 'W', 'q'}

// maskNotice returns the message (an ErrorResponse or NoticeResponse, type byte typ, body)
// with its fields masked for rm, and the masked message text.
func maskNotice(rm *resultMask, typ byte, body []byte) (raw []byte, message string) {
	if rm.sensitive() {
		fields, ok := noticeFields(body)
		if ok {
			code := ""
			for _, f := range fields {
				if f[0] == "C" {
					code = f[1]
				}
			}
			out := fields[:0]
			for _, f := range fields {
				switch {
				case f[0] == "M":
					f[1] = "Gatehouse: PostgreSQL's message is withheld: this statement computes on masked columns, and the message could quote their values (SQLSTATE " + code + ")"
					message = f[1]
				case len(f[0]) == 1 && slices.Contains(withheldFields, f[0][0]):
					continue
				}
				out = append(out, f)
			}
			return encodeNotice(typ, out), message
		}
	}
	fields, ok := noticeFields(body)
	if !ok {
		// A message the proxy cannot read is not passed on as it is.
		sev := "ERROR"
		if typ == 'N' {
			sev = "NOTICE"
		}
		return encodeNotice(typ, [][2]string{{"S", sev}, {"V", sev}, {"C", "XX000"},
			{"M", "Gatehouse: a malformed message from the backend was withheld (masked statement)"}}), ""
	}
	code := ""
	for _, f := range fields {
		if f[0] == "C" {
			code = f[1]
		}
	}
	quotesData := len(code) == 5 && (code[:2] == "22" || code[:2] == "23")
	for i, f := range fields {
		if len(f[0]) != 1 || !slices.Contains(maskedNoticeFields, f[0][0]) {
			continue
		}
		v := f[1]
		if rm.m.HasDetectors() {
			b, _ := rm.m.Detect([]byte(v))
			v = string(b)
		}
		if quotesData {
			switch f[0] {
			case "M":
				v = redactQuoted(v)
			case "D":
				v = "Gatehouse: detail withheld (it may show masked values)"
			}
		}
		fields[i][1] = v
		if f[0] == "M" {
			message = v
		}
	}
	return encodeNotice(typ, fields), message
}

// redactQuoted replaces the text between every pair of double quotes with ****.
func redactQuoted(s string) string {
	out := make([]byte, 0, len(s))
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' && !in:
			in = true
			out = append(out, '"', '*', '*', '*', '*')
		case c == '"' && in:
			in = false
			out = append(out, '"')
		case !in:
			out = append(out, c)
		}
	}
	if in {
		out = append(out, '"')
	}
	return string(out)
}

// noticeFields parses the fields of an ErrorResponse/NoticeResponse body: type byte and
// NUL-terminated value, up to a final NUL.
func noticeFields(body []byte) ([][2]string, bool) {
	var out [][2]string
	for len(body) > 0 {
		t := body[0]
		if t == 0 {
			return out, len(body) == 1
		}
		body = body[1:]
		end := -1
		for i, b := range body {
			if b == 0 {
				end = i
				break
			}
		}
		if end < 0 {
			return nil, false
		}
		out = append(out, [2]string{string([]byte{t}), string(body[:end])})
		body = body[end+1:]
	}
	return nil, false
}

func encodeNotice(typ byte, fields [][2]string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	for _, f := range fields {
		b = append(b, f[0]...)
		b = append(b, f[1]...)
		b = append(b, 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-1))
	return b
}

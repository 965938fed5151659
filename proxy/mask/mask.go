// Package mask hides sensitive values in results before they leave the proxy: by source
// column (as PostgreSQL reports it for each result column) and by content detectors (card
// numbers, emails, SSNs, IBANs, phone numbers, custom patterns) on any text value. Methods
// are full redaction, partial (the last four characters stay), and a deterministic keyed
// HMAC token, so that joins and group-bys on masked values still work.
package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"regexp"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/schemas"
)

// Methods.
const (
	Redact  = "redact"
	Partial = "partial"
	HMAC    = "hmac"
)

// redacted replaces a fully redacted value. It has no digits, so no detector finds it again.
const redacted = "****"

// Masker applies one decision's mask spec. It is safe for concurrent use.
type Masker struct {
	columns   map[string]string // "schema.table.column" → method
	detectors []detector
	key       []byte
	macs      sync.Pool // keyed HMACs, reset between uses (the key's pads computed once)
}

type detector struct {
	name   string
	method string
	find   func(v []byte) [][2]int // non-overlapping [start, end) ranges, in order
}

// New compiles spec. key is the HMAC key; without one, hmac falls back to redaction (never
// to the clear value).
func New(spec *schemas.MaskSpec, key []byte) (*Masker, error) {
	m := &Masker{columns: map[string]string{}, key: key}
	for _, c := range spec.Columns {
		m.columns[c.Column] = c.Method
	}
	for _, d := range spec.Detectors {
		var find func([]byte) [][2]int
		switch d.Name {
		case "card":
			find = findCards
		case "email":
			find = findEmails
		case "ssn":
			find = findSSNs
		case "iban":
			find = findIBANs
		case "phone":
			find = findPhones
		case "regex":
			re, err := regexp.Compile(d.Pattern)
			if err != nil {
				return nil, fmt.Errorf("mask regex %q: %w", d.Pattern, err)
			}
			find = finder(re, 0)
		default:
			return nil, fmt.Errorf("unknown mask detector %q", d.Name)
		}
		m.detectors = append(m.detectors, detector{name: d.Name, method: d.Method, find: find})
	}
	return m, nil
}

// Column returns how the source column "schema.table.column" is masked, if it is.
func (m *Masker) Column(name string) (method string, ok bool) {
	method, ok = m.columns[name]
	return method, ok
}

// ColumnsOf returns the masked columns of table "schema.table".
func (m *Masker) ColumnsOf(table string) []string {
	var out []string
	for c := range m.columns {
		if strings.HasPrefix(c, table+".") && !strings.Contains(c[len(table)+1:], ".") {
			out = append(out, c)
		}
	}
	return out
}

// HasColumns reports whether the spec masks columns.
func (m *Masker) HasColumns() bool { return len(m.columns) > 0 }

// HasDetectors reports whether the spec scans content.
func (m *Masker) HasDetectors() bool { return len(m.detectors) > 0 }

// Whole masks a whole value by method.
func (m *Masker) Whole(method string, v []byte) []byte {
	switch method {
	case Partial:
		return partial(v)
	case HMAC:
		if len(m.key) > 0 {
			mac, _ := m.macs.Get().(hash.Hash)
			if mac == nil {
				mac = hmac.New(sha256.New, m.key)
			}
			mac.Reset()
			mac.Write(v)
			var buf [sha256.Size]byte
			sum := mac.Sum(buf[:0])
			m.macs.Put(mac)
			out := make([]byte, 0, 4+20)
			out = append(out, "tok_"...)
			return hex.AppendEncode(out, sum[:10])
		}
	}
	return []byte(redacted)
}

// Detect masks every sensitive value the detectors find in v and returns the result and how
// many values it masked. v is returned as it is when nothing is found.
func (m *Masker) Detect(v []byte) ([]byte, int) {
	n := 0
	for _, d := range m.detectors {
		found := d.find(v)
		if len(found) == 0 {
			continue
		}
		out := make([]byte, 0, len(v))
		prev := 0
		for _, r := range found {
			out = append(out, v[prev:r[0]]...)
			out = append(out, m.Whole(d.method, v[r[0]:r[1]])...)
			prev = r[1]
		}
		v = append(out, v[prev:]...)
		n += len(found)
	}
	return v, n
}

// Spans returns where the detectors find values in v, [start, end) each (they may overlap
// across detectors): a stream cut between two pieces must not cut through one.
func (m *Masker) Spans(v []byte) [][2]int {
	var out [][2]int
	for _, d := range m.detectors {
		out = append(out, d.find(v)...)
	}
	return out
}

// partial keeps the last four letters or digits and replaces the others with '*';
// separators (spaces, dashes, dots, @) stay, so the shape of the value is kept.
func partial(v []byte) []byte {
	out := []byte(string(v))
	keep := 4
	for i := len(out) - 1; i >= 0; i-- {
		c := out[i]
		if !isAlnum(c) && c < 0x80 {
			continue
		}
		if keep > 0 && c < 0x80 {
			keep--
			continue
		}
		out[i] = '*'
	}
	return out
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

var (
	ibanRE  = regexp.MustCompile(`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b`)
	phoneRE = regexp.MustCompile(`(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{2,4}[ .\-]?\d{3,4}(?:[ .\-]?\d{3,4})?`)
)

// finder runs a regular expression, skipped when the value lacks the byte every match has.
func finder(re *regexp.Regexp, must byte) func([]byte) [][2]int {
	return func(v []byte) [][2]int {
		if must != 0 && !contains(v, must) {
			return nil
		}
		var out [][2]int
		for _, loc := range re.FindAllIndex(v, -1) {
			out = append(out, [2]int{loc[0], loc[1]})
		}
		return out
	}
}

func contains(v []byte, c byte) bool {
	for _, b := range v {
		if b == c {
			return true
		}
	}
	return false
}

// findCards finds 13 to 19 digits (of any script: full-width and Arabic-Indic digits are
// read as digits), optionally grouped by single separators (space, tab, line break, no-break
// space, '-', '.', '/', '_', dashes), that pass the Luhn check and are not part of a longer
// number.
func findCards(v []byte) [][2]int {
	var out [][2]int
	var digits [20]byte
	for i := 0; i < len(v); {
		_, w0 := cardDigit(v, i)
		if w0 == 0 {
			i++
			continue
		}
		if i > 0 && (v[i-1] == '.' || precededByDigit(v, i)) {
			i += w0
			continue
		}
		// The run of digit groups; a card is the longest run of whole groups from its start
		// that is 13 to 19 digits and passes the Luhn check ("4111111111111111.50" is a card
		// and its cents).
		n := 0
		j := i
		var ends [20][2]int // after each group: its end, digits so far
		groups := 0
		for j < len(v) && n <= 19 {
			if d, w := cardDigit(v, j); w > 0 {
				digits[n] = d
				n++
				j += w
				if groups > 0 && ends[groups-1][0] == j-w {
					ends[groups-1] = [2]int{j, n}
				} else if groups < len(ends) {
					ends[groups] = [2]int{j, n}
					groups++
				}
				continue
			}
			if w := cardSep(v, j); w > 0 && n > 0 && j+w < len(v) {
				if _, dw := cardDigit(v, j+w); dw > 0 {
					j += w
					continue
				}
			}
			break
		}
		found := false
		for g := groups - 1; g >= 0; g-- {
			end, k := ends[g][0], ends[g][1]
			if k >= 13 && k <= 19 && luhn(digits[:k]) && (end == len(v) || !startsDigit(v, end)) {
				out = append(out, [2]int{i, end})
				i = end
				found = true
				break
			}
		}
		if found {
			continue
		}
		// Not a card: skip this run of digits.
		for i < len(v) {
			_, w := cardDigit(v, i)
			if w == 0 {
				break
			}
			i += w
		}
	}
	return out
}

// cardDigit is the decimal digit at v[j] ('0'-'9', whatever its script) and its width in
// bytes, or width 0.
func cardDigit(v []byte, j int) (byte, int) {
	c := v[j]
	if c >= '0' && c <= '9' {
		return c, 1
	}
	if c < 0x80 {
		return 0, 0
	}
	r, w := utf8.DecodeRune(v[j:])
	if r == utf8.RuneError || !unicode.IsDigit(r) {
		return 0, 0
	}
	// Decimal digits come in runs of ten from a zero (some runs follow each other).
	k := rune(0)
	for unicode.IsDigit(r - k - 1) {
		k++
	}
	return '0' + byte(k%10), w
}

func startsDigit(v []byte, j int) bool {
	_, w := cardDigit(v, j)
	return w > 0
}

// precededByDigit reports whether the character before v[i] is a digit.
func precededByDigit(v []byte, i int) bool {
	if isDigit(v[i-1]) {
		return true
	}
	if v[i-1] < 0x80 {
		return false
	}
	r, _ := utf8.DecodeLastRune(v[:i])
	return r != utf8.RuneError && unicode.IsDigit(r)
}

// cardSep is the width of a separator between the groups of a card number at v[j], or 0.
func cardSep(v []byte, j int) int {
	switch v[j] {
	case ' ', '-', '.', '/', '_', '\t', '\n', '\r':
		return 1
	}
	if v[j] < 0x80 {
		return 0
	}
	r, w := utf8.DecodeRune(v[j:])
	switch r {
	case 0xA0, 0x2007, 0x2009, 0x202F, 0x3000, 0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2212, 0xFF0D, 0xFF0E, 0xFF0F:
		return w
	}
	return 0
}

func luhn(digits []byte) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// findSSNs finds US social security numbers (AAA-GG-SSSS) in the issued ranges, not part of
// a longer word or number.
func findSSNs(v []byte) [][2]int {
	var out [][2]int
	for i := 0; i+11 <= len(v); i++ {
		if v[i+3] != '-' || v[i+6] != '-' || (i > 0 && isAlnum(v[i-1])) || (i+11 < len(v) && isAlnum(v[i+11])) {
			continue
		}
		ok := true
		for _, j := range [...]int{0, 1, 2, 4, 5, 7, 8, 9, 10} {
			if !isDigit(v[i+j]) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		area, group, serial := string(v[i:i+3]), string(v[i+4:i+6]), string(v[i+7:i+11])
		if area == "000" || area == "666" || area[0] == '9' || group == "00" || serial == "0000" {
			continue
		}
		out = append(out, [2]int{i, i + 11})
		i += 10
	}
	return out
}

func isLocalChar(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func isDomainChar(c byte) bool { return isAlnum(c) || c == '-' || c == '.' }

// findEmails finds addresses local@domain.tld (a top-level domain of two or more letters).
func findEmails(v []byte) [][2]int {
	var out [][2]int
	from := 0
	for {
		at := from + indexByte(v[from:], '@')
		if at < from {
			return out
		}
		start := at
		for start > from && isLocalChar(v[start-1]) {
			start--
		}
		end := at + 1
		for end < len(v) && isDomainChar(v[end]) {
			end++
		}
		// The domain ends at its last label of letters; trailing dots are punctuation.
		for end > at+1 && v[end-1] == '.' {
			end--
		}
		dot := lastIndexByte(v[at+1:end], '.')
		if start < at && dot > 0 {
			tld := v[at+1+dot+1 : end]
			valid := len(tld) >= 2
			for _, c := range tld {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
					valid = false
				}
			}
			if valid {
				out = append(out, [2]int{start, end})
				from = end
				continue
			}
		}
		from = at + 1
	}
}

func indexByte(v []byte, c byte) int {
	for i, b := range v {
		if b == c {
			return i
		}
	}
	return -1
}

func lastIndexByte(v []byte, c byte) int {
	for i := len(v) - 1; i >= 0; i-- {
		if v[i] == c {
			return i
		}
	}
	return -1
}

// findIBANs finds IBANs whose ISO 7064 mod-97 checksum holds.
func findIBANs(v []byte) [][2]int {
	if len(v) < 15 {
		return nil
	}
	var out [][2]int
	for _, loc := range ibanRE.FindAllIndex(v, -1) {
		if ibanValid(v[loc[0]:loc[1]]) {
			out = append(out, [2]int{loc[0], loc[1]})
		}
	}
	return out
}

func ibanValid(s []byte) bool {
	var compact []byte
	for _, c := range s {
		if c != ' ' {
			compact = append(compact, c)
		}
	}
	if len(compact) < 15 || len(compact) > 34 {
		return false
	}
	rearranged := append(append([]byte{}, compact[4:]...), compact[:4]...)
	rem := 0
	for _, c := range rearranged {
		switch {
		case isDigit(c):
			rem = (rem*10 + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			rem = (rem*100 + int(c-'A'+10)) % 97
		default:
			return false
		}
	}
	return rem == 1
}

// findPhones finds phone numbers: 10 to 15 digits in the usual groupings, with an optional
// +country code and area code in parentheses.
func findPhones(v []byte) [][2]int {
	digits := 0
	for _, c := range v {
		if isDigit(c) {
			digits++
		}
	}
	if digits < 10 {
		return nil
	}
	var out [][2]int
	for _, loc := range phoneRE.FindAllIndex(v, -1) {
		n := 0
		for _, c := range v[loc[0]:loc[1]] {
			if isDigit(c) {
				n++
			}
		}
		before := loc[0] > 0 && (isDigit(v[loc[0]-1]) || isAlnum(v[loc[0]-1]))
		after := loc[1] < len(v) && isAlnum(v[loc[1]])
		if n >= 10 && n <= 15 && !before && !after {
			out = append(out, [2]int{loc[0], loc[1]})
		}
	}
	return out
}

// Cache compiles each distinct spec once.
type Cache struct {
	key    []byte
	mu     sync.Mutex
	m      map[string]*Masker
	bySpec map[*schemas.MaskSpec]*Masker // cached decisions share their spec: no key to build
}

// NewCache returns a cache of maskers using key for HMAC tokens.
func NewCache(key []byte) *Cache {
	return &Cache{key: key, m: map[string]*Masker{}, bySpec: map[*schemas.MaskSpec]*Masker{}}
}

// Get returns the masker for spec.
func (c *Cache) Get(spec *schemas.MaskSpec) (*Masker, error) {
	c.mu.Lock()
	m, ok := c.bySpec[spec]
	c.mu.Unlock()
	if ok {
		return m, nil
	}
	var b strings.Builder
	for _, col := range spec.Columns {
		b.WriteString(col.Column + "\x00" + col.Method + "\x00")
	}
	b.WriteByte(1)
	for _, d := range spec.Detectors {
		b.WriteString(d.Name + "\x00" + d.Pattern + "\x00" + d.Method + "\x00")
	}
	key := b.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bySpec) > 10000 {
		clear(c.bySpec)
	}
	if m, ok := c.m[key]; ok {
		c.bySpec[spec] = m
		return m, nil
	}
	m, err := New(spec, c.key)
	if err != nil {
		return nil, err
	}
	if len(c.m) > 1000 {
		clear(c.m)
	}
	c.m[key], c.bySpec[spec] = m, m
	return m, nil
}

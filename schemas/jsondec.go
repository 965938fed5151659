package schemas

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// UnmarshalEvent decodes one event as encoding/json.Unmarshal(data, e) does (e should be
// zero), several times faster: ingest decodes every event of the trail. The fast path takes
// the envelope as the gateway writes it (known keys, once each, strings without escapes,
// no nulls) and validates the payload without building it; anything else goes to
// encoding/json, so the result and the errors are always encoding/json's. e.Payload
// aliases data on the fast path.
func UnmarshalEvent(data []byte, e *Event) error {
	var d EventDecoder
	return d.Unmarshal(data, e)
}

// EventDecoder is UnmarshalEvent for a run of events, typically of one session: a string
// field equal to the previous event's reuses its string instead of allocating another.
// The zero value is ready; not for concurrent use.
type EventDecoder struct {
	d eventDecoder
}

// Unmarshal decodes one event as UnmarshalEvent does.
func (ed *EventDecoder) Unmarshal(data []byte, e *Event) error {
	ed.d.b, ed.d.i = data, 0
	ok := ed.d.event(e)
	ed.d.b, ed.d.e = nil, nil
	if ok {
		return nil
	}
	*e = Event{}
	return json.Unmarshal(data, e)
}

// Slots of eventDecoder.prev.
const (
	slotID = iota
	slotType
	slotCode
	slotSession
	slotResource
	slotPrevHash
	slotHash
	slotSubject
	slotName
	slotIssuer
	slotKind
	slotOnBehalfOf
	numSlots
)

type eventDecoder struct {
	b      []byte
	i      int
	prev   [numSlots]string
	groups []string
	e      *Event // being decoded
}

func (d *eventDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// consume skips whitespace and then c.
func (d *eventDecoder) consume(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// plainString reads a string without escapes or control characters, valid UTF-8: it
// means the same to every decoder. It returns the bytes between the quotes.
func (d *eventDecoder) plainString() ([]byte, bool) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false
	}
	start := d.i + 1
	ascii := true
	for j := start; j < len(d.b); j++ {
		c := d.b[j]
		switch {
		case c == '"':
			s := d.b[start:j]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			d.i = j + 1
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, false
}

// str reads a plain string into *dst, reusing the previous value of its slot when equal.
func (d *eventDecoder) str(dst *string, slot int) bool {
	s, ok := d.plainString()
	if !ok {
		return false
	}
	if slot >= 0 && string(s) == d.prev[slot] {
		*dst = d.prev[slot]
		return true
	}
	*dst = string(s)
	if slot >= 0 {
		d.prev[slot] = *dst
	}
	return true
}

// uint reads a non-negative integer without sign, fraction or exponent that fits uint64.
func (d *eventDecoder) uint(dst *uint64) bool {
	d.ws()
	j := d.i
	for j < len(d.b) && d.b[j] >= '0' && d.b[j] <= '9' {
		j++
	}
	if j == d.i || (d.b[d.i] == '0' && j-d.i > 1) {
		return false
	}
	if j < len(d.b) {
		switch d.b[j] {
		case '.', 'e', 'E':
			return false
		}
	}
	v, err := strconv.ParseUint(string(d.b[d.i:j]), 10, 64)
	if err != nil {
		return false
	}
	*dst, d.i = v, j
	return true
}

// members walks an object's members: for each key it calls member, which reads the value
// (false ends the fast path, as for an unknown or repeated key).
func (d *eventDecoder) members(member func(d *eventDecoder, key []byte, seen *uint32) bool, seen *uint32) bool {
	if !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return true
	}
	for {
		k, ok := d.plainString()
		if !ok || !d.consume(':') || !member(d, k, seen) {
			return false
		}
		if d.consume(',') {
			continue
		}
		return d.consume('}')
	}
}

// once marks bit seen, false when it already was.
func once(seen *uint32, bit uint32) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

func (d *eventDecoder) event(e *Event) bool {
	d.e = e
	var seen uint32
	if !d.members(eventMember, &seen) {
		return false
	}
	d.ws()
	return d.i == len(d.b)
}

func eventMember(d *eventDecoder, k []byte, seen *uint32) bool {
	e := d.e
	switch string(k) {
	case "id":
		return once(seen, 1<<0) && d.str(&e.ID, slotID)
	case "type":
		return once(seen, 1<<1) && d.str(&e.Type, slotType)
	case "code":
		return once(seen, 1<<2) && d.str(&e.Code, slotCode)
	case "time":
		d.ws()
		start := d.i
		if !once(seen, 1<<3) || !d.skipString() {
			return false
		}
		return e.Time.UnmarshalJSON(d.b[start:d.i]) == nil
	case "session_id":
		return once(seen, 1<<4) && d.str(&e.SessionID, slotSession)
	case "seq":
		return once(seen, 1<<5) && d.uint(&e.Seq)
	case "identity":
		var idSeen uint32
		return once(seen, 1<<6) && d.members(identityMember, &idSeen)
	case "resource":
		return once(seen, 1<<7) && d.str(&e.Resource, slotResource)
	case "policy_revision":
		return once(seen, 1<<8) && d.uint(&e.PolicyRevision)
	case "prev_hash":
		// In a chain it is the previous event's hash.
		if d.prev[slotPrevHash] != d.prev[slotHash] {
			d.prev[slotPrevHash] = d.prev[slotHash]
		}
		return once(seen, 1<<9) && d.str(&e.PrevHash, slotPrevHash)
	case "hash":
		return once(seen, 1<<10) && d.str(&e.Hash, slotHash)
	case "payload":
		d.ws()
		start := d.i
		if !once(seen, 1<<11) || d.i >= len(d.b) || d.b[d.i] == 'n' || !d.skipValue(0) {
			return false
		}
		e.Payload = json.RawMessage(d.b[start:d.i])
		return true
	}
	return false
}

func identityMember(d *eventDecoder, k []byte, seen *uint32) bool {
	id := &d.e.Identity
	switch string(k) {
	case "subject":
		return once(seen, 1<<0) && d.str(&id.Subject, slotSubject)
	case "issuer":
		return once(seen, 1<<1) && d.str(&id.Issuer, slotIssuer)
	case "kind":
		return once(seen, 1<<2) && d.str(&id.Kind, slotKind)
	case "on_behalf_of":
		return once(seen, 1<<3) && d.str(&id.OnBehalfOf, slotOnBehalfOf)
	case "name":
		return once(seen, 1<<5) && d.str(&id.Name, slotName)
	case "groups":
		if !once(seen, 1<<4) || !d.consume('[') {
			return false
		}
		var gs []string
		if !d.consume(']') {
			for {
				var g string
				if !d.str(&g, -1) {
					return false
				}
				gs = append(gs, g)
				if d.consume(',') {
					continue
				}
				if !d.consume(']') {
					return false
				}
				break
			}
		}
		// The same groups as the previous event share its slice (read-only).
		if d.groups != nil && slices.Equal(gs, d.groups) {
			id.Groups = d.groups
		} else {
			if gs == nil {
				gs = []string{}
			}
			id.Groups, d.groups = gs, gs
		}
		return true
	}
	return false
}

// maxDepth bounds the nesting the fast path follows (encoding/json allows 10,000).
const maxDepth = 512

// skipValue validates and skips one JSON value of any kind.
func (d *eventDecoder) skipValue(depth int) bool {
	if depth > maxDepth {
		return false
	}
	d.ws()
	if d.i >= len(d.b) {
		return false
	}
	switch c := d.b[d.i]; {
	case c == '{':
		d.i++
		if d.consume('}') {
			return true
		}
		for {
			d.ws()
			if !d.skipString() || !d.consume(':') || !d.skipValue(depth+1) {
				return false
			}
			if d.consume(',') {
				continue
			}
			return d.consume('}')
		}
	case c == '[':
		d.i++
		if d.consume(']') {
			return true
		}
		for {
			if !d.skipValue(depth + 1) {
				return false
			}
			if d.consume(',') {
				continue
			}
			return d.consume(']')
		}
	case c == '"':
		return d.skipString()
	case c == '-' || (c >= '0' && c <= '9'):
		return d.skipNumber()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	}
	return false
}

func (d *eventDecoder) literal(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// skipString skips a string at d.i, checking escapes as JSON defines them. Invalid UTF-8
// is accepted, as encoding/json accepts it (it stays as it is in the raw payload).
func (d *eventDecoder) skipString() bool {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return false
	}
	for j := d.i + 1; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			d.i = j + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			j++
			if j >= len(d.b) {
				return false
			}
			switch d.b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(d.b)-j < 5 {
					return false
				}
				for _, h := range d.b[j+1 : j+5] {
					if !isHex(h) {
						return false
					}
				}
				j += 4
			default:
				return false
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// skipNumber skips a number in JSON's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *eventDecoder) skipNumber() bool {
	b, j := d.b, d.i
	if j < len(b) && b[j] == '-' {
		j++
	}
	digits := func() bool {
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j > k
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case !digits():
		return false
	}
	if j < len(b) && b[j] == '.' {
		j++
		if !digits() {
			return false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if !digits() {
			return false
		}
	}
	d.i = j
	return true
}

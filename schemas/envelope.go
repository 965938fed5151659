package schemas

import (
	"strconv"
	"time"
)

// EnvelopeEncoder encodes the events of one session, hash empty, byte for byte as
// Event.AppendJSON does (the hash is computed over these bytes and spliced in), with the
// fields that do not change within a session (session_id, identity, resource) encoded
// once: a proxy encodes four or five events per statement.
type EnvelopeEncoder struct {
	session []byte // ,"session_id":"…","seq":
	fixed   []byte // ,"identity":{…},"resource":"…"
}

// NewEnvelopeEncoder prepares the encoding of the events of session sessionID.
func NewEnvelopeEncoder(sessionID string, id *Identity, resource string) *EnvelopeEncoder {
	e := &EnvelopeEncoder{}
	e.session = append(e.session, `,"session_id":`...)
	e.session = AppendJSONString(e.session, sessionID)
	e.session = append(e.session, `,"seq":`...)
	e.fixed = append(e.fixed, `,"identity":`...)
	e.fixed = id.AppendJSON(e.fixed)
	e.fixed = append(e.fixed, `,"resource":`...)
	e.fixed = AppendJSONString(e.fixed, resource)
	return e
}

// AppendUnhashed appends the encoding of an event with an empty hash, as Event.AppendJSON
// does for an Event with these fields, from bytes rather than strings: the proxy encodes four or five
// events per statement, and an ID and a previous hash as strings were two allocations each.
// id and prevHash are written as they are: they must be plain tokens (a UUID, a hex hash),
// which need no JSON escaping.
func (e *EnvelopeEncoder) AppendUnhashed(b, id []byte, typ, code string, t time.Time, seq, revision uint64, prevHash, payload []byte) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","type":`...)
	b = AppendJSONString(b, typ)
	b = append(b, `,"code":`...)
	b = AppendJSONString(b, code)
	b = append(b, `,"time":`...)
	b = appendJSONTime(b, t)
	b = append(b, e.session...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, e.fixed...)
	if revision != 0 {
		b = append(b, `,"policy_revision":`...)
		b = strconv.AppendUint(b, revision, 10)
	}
	b = append(b, `,"prev_hash":"`...)
	b = append(b, prevHash...)
	b = append(b, `","hash":"","payload":`...)
	b = appendJSONRaw(b, payload)
	return append(b, '}')
}

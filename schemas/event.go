package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Payload is implemented by (pointers to) every generated payload type.
type Payload interface {
	EventType() string
	// AppendJSON appends the payload's JSON encoding, exactly as encoding/json writes it.
	AppendJSON(b []byte) []byte
}

// ComputeHash returns the chain hash of e: hex SHA-256 over the previous hash, a newline,
// and the JSON encoding of e with Hash empty. The JSON encoding of an Event is
// deterministic (struct field order), so anyone holding the stored event can recompute it.
func (e *Event) ComputeHash() (string, error) {
	c := *e
	c.Hash = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	h := sha256.New()
	h.Write([]byte(e.PrevHash))
	h.Write([]byte{'\n'})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Decode unmarshals the payload of e into p, checking that the types agree.
func (e *Event) Decode(p Payload) error {
	if p.EventType() != e.Type {
		return fmt.Errorf("event %s is %s, not %s", e.ID, e.Type, p.EventType())
	}
	return json.Unmarshal(e.Payload, p)
}

// VerifyChain checks that events (one session, in sequence order) form an unbroken hash
// chain starting at sequence 1. It returns the first problem found.
func VerifyChain(events []Event) error {
	var c Chain
	for i := range events {
		if err := c.Add(&events[i]); err != nil {
			return err
		}
	}
	return nil
}

// Chain checks a session's events one at a time, in order, as VerifyChain does (for a
// replay that streams). The zero value expects the first event.
type Chain struct {
	n    uint64
	prev string
}

// Add checks the next event.
func (c *Chain) Add(e *Event) error {
	if want := c.n + 1; e.Seq != want {
		return fmt.Errorf("event %s: sequence %d, want %d (missing or reordered event)", e.ID, e.Seq, want)
	}
	if e.PrevHash != c.prev {
		return fmt.Errorf("event %s (seq %d): prev_hash does not match the previous event's hash", e.ID, e.Seq)
	}
	h, err := e.ComputeHash()
	if err != nil {
		return err
	}
	if h != e.Hash {
		return fmt.Errorf("event %s (seq %d): hash mismatch (event altered)", e.ID, e.Seq)
	}
	c.n, c.prev = e.Seq, e.Hash
	return nil
}

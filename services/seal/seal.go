// Package seal signs the end of every session's hash chain with the gateway's Ed25519 key
// and verifies sessions read back from the audit store: every missing, reordered or altered
// event, and every ended session without a valid seal, is reported.
package seal

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/gatehouse/gatehouse/schemas"
)

// Key is a signing key.
type Key struct {
	Private ed25519.PrivateKey
	ID      string
}

// KeyID names a public key: the first 8 bytes of its SHA-256, hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// LoadKey reads a key file (the 32-byte seed, base64), creating it when create is set and
// it does not exist.
func LoadKey(path string, create bool) (*Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(seed)+"\n"), 0o600); err != nil {
			return nil, err
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("audit signing key %s: want the base64 of a %d-byte Ed25519 seed", path, ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	return &Key{Private: priv, ID: KeyID(priv.Public().(ed25519.PublicKey))}, nil
}

func message(session string, events uint64, lastHash string) []byte {
	return []byte("gatehouse-seal-v1\n" + session + "\n" + strconv.FormatUint(events, 10) + "\n" + lastHash)
}

// Seal is the session.sealed payload for a session whose last event is number events with
// hash lastHash.
func (k *Key) Seal(session string, events uint64, lastHash string) *schemas.SessionSealed {
	sig := ed25519.Sign(k.Private, message(session, events, lastHash))
	return &schemas.SessionSealed{Events: events, LastHash: lastHash, KeyID: k.ID, Signature: base64.StdEncoding.EncodeToString(sig)}
}

// Problem is one finding of a verification.
type Problem struct {
	Session string `json:"session"`
	Seq     uint64 `json:"seq,omitempty"`
	Kind    string `json:"kind"` // missing, reordered, altered, duplicate, unsealed, bad_seal (truncated: see query.Verification)
	Detail  string `json:"detail"`
	// Query is the statement's number in its session, for a problem of one statement.
	Query uint64 `json:"query,omitempty"`
}

// Verify checks one session's events as stored (ordered by sequence number): the chain,
// and, when the session has ended, its seal by one of keys.
func Verify(session string, events []schemas.Event, keys map[string]ed25519.PublicKey) []Problem {
	var out []Problem
	add := func(seq uint64, kind, format string, args ...any) {
		out = append(out, Problem{Session: session, Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}
	prevHash, want := "", uint64(1)
	ended := false
	var seal *schemas.Event
	for i := range events {
		e := &events[i]
		switch {
		case e.Seq < want:
			add(e.Seq, "duplicate", "a second event with sequence %d (%s)", e.Seq, e.ID)
			continue
		case e.Seq > want:
			add(want, "missing", "events %d to %d are missing", want, e.Seq-1)
			prevHash = e.PrevHash // go on from here, so that one gap is one finding
		}
		want = e.Seq + 1
		h, err := e.ComputeHash()
		switch {
		case err != nil || h != e.Hash:
			add(e.Seq, "altered", "event %s (%s) does not match its hash", e.ID, e.Type)
		case e.PrevHash != prevHash:
			add(e.Seq, "reordered", "event %s (%s) does not follow the event before it in the chain", e.ID, e.Type)
		}
		prevHash = e.Hash
		switch e.Type {
		case schemas.TypeSessionEnd:
			ended = true
		case schemas.TypeSessionSealed:
			seal = e
		}
	}
	if seal == nil {
		if ended {
			add(0, "unsealed", "the session ended but has no seal")
		}
		return out
	}
	var p schemas.SessionSealed
	if err := seal.Decode(&p); err != nil {
		add(seal.Seq, "bad_seal", "unreadable seal: %v", err)
		return out
	}
	pub, ok := keys[p.KeyID]
	sig, err := base64.StdEncoding.DecodeString(p.Signature)
	switch {
	case !ok:
		add(seal.Seq, "bad_seal", "sealed with unknown key %s", p.KeyID)
	case err != nil || !ed25519.Verify(pub, message(session, p.Events, p.LastHash), sig):
		add(seal.Seq, "bad_seal", "the seal's signature does not verify")
	case p.Events != seal.Seq-1 || p.LastHash != seal.PrevHash:
		add(seal.Seq, "bad_seal", "the seal covers %d events ending in %.12s…, the chain has %d ending in %.12s…", p.Events, p.LastHash, seal.Seq-1, seal.PrevHash)
	}
	if last := events[len(events)-1]; last.Seq != seal.Seq {
		add(last.Seq, "altered", "events after the seal")
	}
	return out
}

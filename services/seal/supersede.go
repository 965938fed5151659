package seal

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strconv"

	"github.com/gatehouse/gatehouse/schemas"
)

// ReasonGatewayLost is the reason of the session.end the sweeper records for a session
// whose gateway process went silent (its key lapsed from gh_gateways) without ending it.
const ReasonGatewayLost = "gateway_lost"

func attestMessage(session string, events uint64, lastHash string) []byte {
	return []byte("gatehouse-attest-v1\n" + session + "\n" + strconv.FormatUint(events, 10) + "\n" + lastHash)
}

// Attest is the session.attested payload for a session whose events up to number events
// (hash lastHash) are this gateway's: what a restart found of a killed predecessor's
// session in its spool. Its message differs from a seal's: an attestation says "these
// events are mine", not "the session ended here", and cannot be passed off as a seal.
func (k *Key) Attest(session string, events uint64, lastHash string) *schemas.SessionAttested {
	sig := ed25519.Sign(k.Private, attestMessage(session, events, lastHash))
	return &schemas.SessionAttested{Events: events, LastHash: lastHash, KeyID: k.ID, Signature: base64.StdEncoding.EncodeToString(sig)}
}

// point is an event by position and hash.
type point struct {
	seq  uint64
	hash string
}

// Superseded is a sweeper's end (and its seal) that the session's own gateway overtook.
type Superseded struct {
	Seq    uint64 // the sweeper's session.end
	Signed uint64 // the gateway's event, past it, whose seal or attestation proves the gateway's events
}

// Problem describes a superseded end for a verification's report.
func (s Superseded) Problem(session string) Problem {
	return Problem{Session: session, Seq: s.Seq, Kind: "superseded", Detail: fmt.Sprintf(
		"the sweeper ended the session as %s at event %d (its gateway was silent past audit.gateway_timeout); the gateway's own events continue the chain from there, signed by it up to event %d: it was cut off or restarted, not gone; its events replace that end",
		ReasonGatewayLost, s.Seq, s.Signed)}
}

// Supersede sorts out a session whose gateway and ingest's sweeper both wrote past the
// same event: the sweeper ended the session (session.end gateway_lost, sealed) when the
// gateway's key lapsed, but the gateway was only cut off (a partition longer than
// audit.gateway_timeout), or was killed and its restart published what its spool held.
// Both continue the chain from the same event: a fork. The gateway's branch wins, and the
// sweeper's end and its seal are taken out (reported as superseded, not as a problem),
// only when all of this holds:
//
//   - the sweeper's end is exactly what the sweeper writes (its payload byte for byte, its
//     hash, its link to the event before it) and its seal, if any, verifies;
//   - the gateway's branch starts at the same position from the same event, its events
//     hash, and it reaches an event signed by a key of keys: the gateway's own seal (it
//     ended the session itself) or an attestation (session.attested, its restart);
//   - or, without a signature yet, the gateway is alive (gatewayAlive, asked only then):
//     its session goes on after the link returned, and it will seal it; nothing is
//     reported until then.
//
// Writing to the audit stream is not enough to win a fork: an event appended to a swept
// session, or rows replaced in the store, are verified as they are and reported. Every
// session.attested is taken out of the events (it is not part of the chain); one that does
// not verify is a problem.
func Supersede(session string, events []schemas.Event, keys map[string]ed25519.PublicKey, gatewayAlive func() bool) ([]schemas.Event, []Superseded, []Problem) {
	var problems []Problem
	signed := map[point]bool{} // events a key of keys signed
	chain := events[:0:0]
	for i := range events {
		e := &events[i]
		switch e.Type {
		case schemas.TypeSessionAttested:
			var a schemas.SessionAttested
			if err := e.Decode(&a); err != nil || !validSignature(keys, a.KeyID, a.Signature, attestMessage(session, a.Events, a.LastHash)) || e.Seq != 0 {
				problems = append(problems, Problem{Session: session, Seq: a.Events, Kind: "bad_seal", Detail: fmt.Sprintf("attestation %s does not verify (unknown key, bad signature or not at position 0)", e.ID)})
				continue
			}
			signed[point{a.Events, a.LastHash}] = true
			continue
		case schemas.TypeSessionSealed:
			var p schemas.SessionSealed
			if e.Decode(&p) == nil && validSignature(keys, p.KeyID, p.Signature, message(session, p.Events, p.LastHash)) && p.Events+1 == e.Seq && p.LastHash == e.PrevHash {
				signed[point{p.Events, p.LastHash}] = true
			}
		}
		chain = append(chain, *e)
	}
	if len(problems) == 0 && len(chain) == len(events) && !hasSweeperEnd(chain) {
		return events, nil, nil
	}
	bySeq := map[uint64][]int{}
	for i := range chain {
		bySeq[chain[i].Seq] = append(bySeq[chain[i].Seq], i)
	}
	drop := map[int]bool{}
	var sup []Superseded
	alive, asked := false, false
	for i := range chain {
		e := &chain[i]
		if !sweeperEnd(chain, bySeq, i) {
			continue
		}
		fork := -1
		for _, j := range bySeq[e.Seq] {
			if j != i && chain[j].PrevHash == e.PrevHash && hashes(&chain[j]) {
				fork = j
				break
			}
		}
		if fork < 0 {
			continue // nothing of the gateway's at its position: it ends the session
		}
		seal := -1
		for _, j := range bySeq[e.Seq+1] {
			if chain[j].Type == schemas.TypeSessionSealed && chain[j].PrevHash == e.Hash {
				seal = j
			}
		}
		if seal >= 0 {
			var p schemas.SessionSealed
			if !hashes(&chain[seal]) || chain[seal].Decode(&p) != nil || p.LastHash != e.Hash || !signed[point{p.Events, p.LastHash}] {
				continue // a seal after the sweeper's end that does not verify: Verify reports it
			}
		}
		at := branchSigned(chain, bySeq, fork, signed)
		if at == 0 {
			if !asked {
				alive, asked = gatewayAlive != nil && gatewayAlive(), true
			}
			if !alive {
				continue
			}
		}
		drop[i] = true
		if seal >= 0 {
			drop[seal] = true
		}
		if at > 0 {
			sup = append(sup, Superseded{Seq: e.Seq, Signed: at})
		}
	}
	if len(drop) == 0 {
		return chain, nil, problems
	}
	kept := make([]schemas.Event, 0, len(chain)-len(drop))
	for i := range chain {
		if !drop[i] {
			kept = append(kept, chain[i])
		}
	}
	return kept, sup, problems
}

func hasSweeperEnd(events []schemas.Event) bool {
	for i := range events {
		if events[i].Type == schemas.TypeSessionEnd {
			return true
		}
	}
	return false
}

// sweeperEnd: events[i] is a session.end exactly as the sweeper writes it — reason
// gateway_lost in its own encoding (a payload another reader could read otherwise is not
// one), hashing to its hash, and chained to the event before it.
func sweeperEnd(events []schemas.Event, bySeq map[uint64][]int, i int) bool {
	e := &events[i]
	if e.Type != schemas.TypeSessionEnd || e.Seq < 2 || !hashes(e) {
		return false
	}
	var end schemas.SessionEnd
	if e.Decode(&end) != nil || end.Reason != ReasonGatewayLost || !bytes.Equal(end.AppendJSON(nil), e.Payload) || end.LastSeq+1 != e.Seq {
		return false
	}
	for _, j := range bySeq[e.Seq-1] {
		if events[j].Hash == e.PrevHash && hashes(&events[j]) {
			return true
		}
	}
	return false
}

// branchSigned follows the gateway's branch from events[from] (each next event chained to
// the one before and hashing; never onto a sweeper's end, whose seal proves nothing of the
// gateway's) and returns the first position on it that the gateway's seal or attestation
// signed; 0 when none.
func branchSigned(events []schemas.Event, bySeq map[uint64][]int, from int, signed map[point]bool) uint64 {
	cur := from
	for {
		e := &events[cur]
		if signed[point{e.Seq, e.Hash}] {
			return e.Seq
		}
		next := -1
		for _, j := range bySeq[e.Seq+1] {
			if events[j].PrevHash == e.Hash && hashes(&events[j]) && !sweeperEnd(events, bySeq, j) {
				next = j
				break
			}
		}
		if next < 0 {
			return 0
		}
		cur = next
	}
}

func hashes(e *schemas.Event) bool {
	h, err := e.ComputeHash()
	return err == nil && h == e.Hash
}

func validSignature(keys map[string]ed25519.PublicKey, keyID, signature string, msg []byte) bool {
	pub, ok := keys[keyID]
	if !ok {
		return false
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	return err == nil && ed25519.Verify(pub, msg, sig)
}

package seal

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"slices"
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
	Seq        uint64 // the sweeper's session.end
	Signed     uint64 // the gateway's event, past it, whose seal or attestation proves the gateway's events
	SignedHash string // that event's hash
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
	attested := slices.ContainsFunc(events, func(e schemas.Event) bool { return e.Type == schemas.TypeSessionAttested })
	if !attested && !hasSweeperEnd(events) {
		return events, nil, nil // the common case: nothing to sort out, nothing copied
	}
	chain := events
	if attested {
		chain = make([]schemas.Event, 0, len(events))
	}
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
		if attested {
			chain = append(chain, *e)
		}
	}
	if !hasSweeperEnd(chain) {
		return chain, nil, problems
	}
	f := newForks(chain, signed)
	drop := map[int]bool{}
	reported := map[uint64]bool{}
	var sup []Superseded
	alive, asked := false, false
	for i := range chain {
		if !f.sweeperEnd(i) {
			continue
		}
		e := &chain[i]
		fork := f.fork(e)
		if fork < 0 {
			continue // nothing of the gateway's at its position: it ends the session
		}
		seal := -1
		for _, j := range f.sealsOf[e.Hash] {
			if chain[j].Seq == e.Seq+1 {
				seal = j
			}
		}
		if seal >= 0 {
			var p schemas.SessionSealed
			if !f.hashes(seal) || chain[seal].Decode(&p) != nil || p.LastHash != e.Hash || !signed[point{p.Events, p.LastHash}] {
				continue // a seal after the sweeper's end that does not verify: Verify reports it
			}
		}
		signedIdx := f.signedAt(fork)
		if signedIdx < 0 {
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
		if signedIdx < 0 {
			continue
		}
		at := chain[signedIdx].Seq
		sup = append(sup, Superseded{Seq: e.Seq, Signed: at, SignedHash: chain[signedIdx].Hash})
		if last := f.lastOf(fork); last > at && !reported[at] {
			if !asked {
				alive, asked = gatewayAlive != nil && gatewayAlive(), true
			}
			if !alive { // a live gateway's session goes on past what it has signed so far
				reported[at] = true
				problems = append(problems, Problem{Session: session, Seq: at + 1, Kind: "unsigned", Detail: fmt.Sprintf(
					"events %d to %d continue the gateway's branch past the sweeper's end and past what the gateway signed (event %d), and its gateway is gone: no holder of the audit key vouches for them", at+1, last, at)})
			}
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

// hasSweeperEnd: some session.end could be the sweeper's (whose canonical payload holds
// the reason literally); most sessions have none, and cost no more than this look.
func hasSweeperEnd(events []schemas.Event) bool {
	for i := range events {
		if events[i].Type == schemas.TypeSessionEnd && bytes.Contains(events[i].Payload, []byte(ReasonGatewayLost)) {
			return true
		}
	}
	return false
}

// forks holds what Supersede asks of a session's events, each answer computed once: an
// attacker may write many ends and forks into one session, and the work stays linear.
type forks struct {
	events []schemas.Event
	bySeq  map[uint64][]int
	signed map[point]bool
	hash   []int8  // 0 unknown, 1 hashes, -1 does not
	sweep  []int8  // the same for sweeperEnd
	at     []int   // index of the first signed event on the branch; -1 none, -2 unknown
	nxt    []int   // -2 unknown
	last   []int64 // -1 unknown
	// forks: the gateway's event at a position, by the hash it follows; sealsOf: the
	// session.sealed events by the hash they follow.
	forks   map[point]int
	sealsOf map[string][]int
}

func newForks(events []schemas.Event, signed map[point]bool) *forks {
	f := &forks{events: events, bySeq: map[uint64][]int{}, signed: signed, hash: make([]int8, len(events)), sweep: make([]int8, len(events)),
		at: make([]int, len(events)), nxt: make([]int, len(events)), last: make([]int64, len(events))}
	f.forks, f.sealsOf = map[point]int{}, map[string][]int{}
	for i := range events {
		f.bySeq[events[i].Seq] = append(f.bySeq[events[i].Seq], i)
		if events[i].Type == schemas.TypeSessionSealed {
			f.sealsOf[events[i].PrevHash] = append(f.sealsOf[events[i].PrevHash], i)
		}
		f.at[i], f.nxt[i], f.last[i] = -2, -2, -1
	}
	return f
}

func (f *forks) hashes(i int) bool {
	if f.hash[i] == 0 {
		f.hash[i] = -1
		if h, err := f.events[i].ComputeHash(); err == nil && h == f.events[i].Hash {
			f.hash[i] = 1
		}
	}
	return f.hash[i] == 1
}

// sweeperEnd: events[i] is a session.end exactly as the sweeper writes it — reason
// gateway_lost in its own encoding (a payload another reader could read otherwise is not
// one), hashing to its hash, and chained to the event before it.
func (f *forks) sweeperEnd(i int) bool {
	if f.sweep[i] != 0 {
		return f.sweep[i] == 1
	}
	f.sweep[i] = -1
	e := &f.events[i]
	if e.Type != schemas.TypeSessionEnd || e.Seq < 2 || !f.hashes(i) {
		return false
	}
	var end schemas.SessionEnd
	if e.Decode(&end) != nil || end.Reason != ReasonGatewayLost || !bytes.Equal(end.AppendJSON(nil), e.Payload) || end.LastSeq+1 != e.Seq {
		return false
	}
	for _, j := range f.bySeq[e.Seq-1] {
		if f.events[j].Hash == e.PrevHash && f.hashes(j) {
			f.sweep[i] = 1
			return true
		}
	}
	return false
}

// signedAt follows the gateway's branch from events[from] (f.next) and returns the index
// of the first event on it that the gateway's seal or attestation signed; -1 when none.
// Each event's answer is kept: one walk over a branch serves every fork on it.
func (f *forks) signedAt(from int) int {
	var path []int
	cur, res := from, -1
	for {
		if f.at[cur] != -2 {
			res = f.at[cur]
			break
		}
		path = append(path, cur)
		if e := &f.events[cur]; f.signed[point{e.Seq, e.Hash}] {
			res = cur
			break
		}
		next := f.next(cur)
		if next < 0 {
			break
		}
		cur = next
	}
	// Every event on the path reaches the same first signed event, or is that event.
	for k := len(path) - 1; k >= 0; k-- {
		i := path[k]
		if e := &f.events[i]; f.signed[point{e.Seq, e.Hash}] {
			res = i
		}
		f.at[i] = res
	}
	return res
}

// fork is the gateway's event at the position of the sweeper's end e, following the same
// event: the first there that hashes and is no sweeper's end; -1 when none.
func (f *forks) fork(e *schemas.Event) int {
	k := point{e.Seq, e.PrevHash}
	if j, ok := f.forks[k]; ok {
		return j
	}
	f.forks[k] = -1
	for _, j := range f.bySeq[e.Seq] {
		if f.events[j].PrevHash == e.PrevHash && f.hashes(j) && !f.sweeperEnd(j) {
			f.forks[k] = j
			break
		}
	}
	return f.forks[k]
}

// next is the event that follows events[i] on its branch: the first at the next position
// chained to it and hashing, never a sweeper's end (whose seal proves nothing of the
// gateway's); -1 when none.
func (f *forks) next(i int) int {
	if f.nxt[i] != -2 {
		return f.nxt[i]
	}
	f.nxt[i] = -1
	e := &f.events[i]
	if e.Seq == ^uint64(0) {
		return -1
	}
	for _, j := range f.bySeq[e.Seq+1] {
		if f.events[j].PrevHash == e.Hash && f.hashes(j) && !f.sweeperEnd(j) {
			f.nxt[i] = j
			break
		}
	}
	return f.nxt[i]
}

// lastOf is the position of the last event on the branch from events[from] (a seal
// closing it not counted).
func (f *forks) lastOf(from int) uint64 {
	var path []int
	cur := from
	for f.last[cur] < 0 {
		path = append(path, cur)
		n := f.next(cur)
		if n >= 0 && f.events[n].Type == schemas.TypeSessionSealed {
			n = -1 // a seal closes a chain, it adds no event to it
		}
		if n < 0 {
			f.last[cur] = int64(f.events[cur].Seq)
			break
		}
		cur = n
	}
	for _, i := range path {
		f.last[i] = f.last[cur]
	}
	return uint64(f.last[from])
}

func validSignature(keys map[string]ed25519.PublicKey, keyID, signature string, msg []byte) bool {
	pub, ok := keys[keyID]
	if !ok {
		return false
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	return err == nil && ed25519.Verify(pub, msg, sig)
}

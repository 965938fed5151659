package seal

import (
	"fmt"

	"github.com/gatehouse/gatehouse/schemas"
)

// ReasonGatewayLost is the reason of the session.end the sweeper records for a session
// whose gateway process went silent (its key lapsed from gh_gateways) without ending it.
const ReasonGatewayLost = "gateway_lost"

// Superseded is a sweeper's end (and its seal) that the session's own gateway overtook.
type Superseded struct {
	Seq    uint64 // the sweeper's session.end
	LastOf uint64 // the last event of the gateway's own, past the sweeper's end
}

// Supersede takes out of a session's events (ordered by sequence number) every end the
// sweeper recorded (session.end gateway_lost, and the seal chained right after it) that
// the session's own gateway overtook: an event of the gateway's at or past the sweeper's
// end — the gateway was cut off, not dead (a partition longer than audit.gateway_timeout),
// or it was killed and a restart published what its spool held. The gateway's events are
// the session; the sweeper's end was the best the trail knew at the time, and it is
// reported as superseded rather than as a duplicate. What remains is verified as usual:
// the gateway's events must chain from its own earlier ones, so nothing can be slipped in
// this way that verification would otherwise catch.
//
// A sweeper's end that no event of the gateway's reaches stays: it ends the session.
func Supersede(events []schemas.Event) ([]schemas.Event, []Superseded) {
	ends := map[int]bool{} // index of a sweeper's end or of the seal chained to it
	var lost []int
	var own uint64 // the last sequence number of the gateway's own events
	for i := range events {
		e := &events[i]
		if e.Type == schemas.TypeSessionEnd && sweeperEnd(e) {
			lost = append(lost, i)
			continue
		}
		if e.Type == schemas.TypeSessionSealed && i > 0 && len(lost) > 0 && sealsSweeperEnd(events, lost, e) {
			continue
		}
		own = max(own, e.Seq)
	}
	if len(lost) == 0 {
		return events, nil
	}
	var sup []Superseded
	for _, i := range lost {
		if events[i].Seq > own {
			continue // nothing of the gateway's at or past it: it ends the session
		}
		ends[i] = true
		for j := range events {
			if events[j].Type == schemas.TypeSessionSealed && events[j].PrevHash == events[i].Hash {
				ends[j] = true
			}
		}
		sup = append(sup, Superseded{Seq: events[i].Seq, LastOf: own})
	}
	if len(sup) == 0 {
		return events, nil
	}
	out := make([]schemas.Event, 0, len(events)-len(ends))
	for i := range events {
		if !ends[i] {
			out = append(out, events[i])
		}
	}
	return out, sup
}

func sweeperEnd(e *schemas.Event) bool {
	var end schemas.SessionEnd
	return e.Decode(&end) == nil && end.Reason == ReasonGatewayLost
}

// sealsSweeperEnd: e is chained right after one of the sweeper's ends.
func sealsSweeperEnd(events []schemas.Event, lost []int, e *schemas.Event) bool {
	for _, i := range lost {
		if events[i].Hash == e.PrevHash {
			return true
		}
	}
	return false
}

// Problem describes a superseded end for a verification's report.
func (s Superseded) Problem(session string) Problem {
	return Problem{Session: session, Seq: s.Seq, Kind: "superseded", Detail: fmt.Sprintf(
		"the sweeper ended the session as %s at event %d (its gateway was silent past audit.gateway_timeout), and the gateway's own events reach %d: it was cut off, not gone; its events replace that end",
		ReasonGatewayLost, s.Seq, s.LastOf)}
}

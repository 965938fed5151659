package mcp

import (
	"sync"
	"time"
)

// parking keeps the statements held for approval after their tool call returned the
// approval id: the connection to the proxy stays open (that is the hold), a bounded
// number per agent, and once the hold ends its result waits for approval_status for a
// while. Entries are the agent's own: another agent asking for the same id finds
// nothing.
type parking struct {
	max  int
	keep time.Duration

	mu      sync.Mutex
	entries map[parkKey]*parkedStatement
}

type parkKey struct{ agent, approval string }

type parkedStatement struct {
	exec    *execution
	appName string
	result  *Result // nil while the hold lasts
	decided time.Time
}

func newParking(max int, keep time.Duration) *parking {
	return &parking{max: max, keep: keep, entries: map[parkKey]*parkedStatement{}}
}

// park keeps e, held for approval id; false when agent already has as many statements
// waiting as it may.
func (p *parking) park(agent, id, appName string, e *execution) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweepLocked(time.Now())
	waiting := 0
	for k, v := range p.entries {
		if k.agent == agent && v.result == nil {
			waiting++
		}
	}
	if waiting >= p.max {
		return false
	}
	ps := &parkedStatement{exec: e, appName: appName}
	key := parkKey{agent, id}
	p.entries[key] = ps
	go func() {
		r, ok := <-e.done
		if !ok {
			return
		}
		p.mu.Lock()
		ps.result, ps.decided = &r, time.Now()
		p.mu.Unlock()
	}()
	return true
}

// status is what agent's statement held for id came to: ok false when there is none (or
// no longer); result nil while it waits.
func (p *parking) status(agent, id string) (result *Result, appName string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweepLocked(time.Now())
	ps, ok := p.entries[parkKey{agent, id}]
	if !ok {
		return nil, "", false
	}
	return ps.result, ps.appName, true
}

// sweepLocked drops results kept past their time.
func (p *parking) sweepLocked(now time.Time) {
	for k, v := range p.entries {
		if v.result != nil && now.Sub(v.decided) > p.keep {
			delete(p.entries, k)
		}
	}
}

// closeAll ends every hold (shutdown).
func (p *parking) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, v := range p.entries {
		if v.result == nil {
			v.exec.abort()
		}
		delete(p.entries, k)
	}
}

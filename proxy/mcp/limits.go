package mcp

import (
	"sync"
	"time"
)

// limiter counts, per agent, tool calls and HTTP requests per minute and rows per hour,
// in fixed windows. Only verified agents get an entry; entries whose windows have all
// passed are dropped when the table grows, so it stays bounded by the agents active in
// the last hour.
type limiter struct {
	calls, rows, sessions int

	mu     sync.Mutex
	agents map[string]*usage
}

type usage struct {
	minute                   time.Time // start of the minute window
	calls, request, sessions int
	hour                     time.Time // start of the hour window
	rows                     int
}

// maxAgents is when the table is swept for idle agents.
const maxAgents = 10000

func newLimiter(callsPerMinute, rowsPerHour, sessionsPerMinute int) *limiter {
	return &limiter{calls: callsPerMinute, rows: rowsPerHour, sessions: sessionsPerMinute, agents: map[string]*usage{}}
}

func (l *limiter) requestsPerMinute() int { return l.calls*4 + 60 }

// get returns agent's usage with its windows moved to now. l.mu is held.
func (l *limiter) getLocked(agent string, now time.Time) *usage {
	u, ok := l.agents[agent]
	if !ok {
		if len(l.agents) >= maxAgents {
			for k, v := range l.agents {
				if now.Sub(v.hour) >= time.Hour && now.Sub(v.minute) >= time.Minute {
					delete(l.agents, k)
				}
			}
		}
		u = &usage{}
		l.agents[agent] = u
	}
	if now.Sub(u.minute) >= time.Minute {
		u.minute, u.calls, u.request, u.sessions = now.Truncate(time.Minute), 0, 0, 0
	}
	if now.Sub(u.hour) >= time.Hour {
		u.hour, u.rows = now.Truncate(time.Hour), 0
	}
	return u
}

// request counts an HTTP request; false: over the bound.
func (l *limiter) request(agent string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.getLocked(agent, now)
	if u.request >= l.requestsPerMinute() {
		return false
	}
	u.request++
	return true
}

// session counts a new MCP session; false: over mcp.sessions_per_minute.
func (l *limiter) session(agent string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.getLocked(agent, now)
	if u.sessions >= l.sessions {
		return false
	}
	u.sessions++
	return true
}

// call counts a tool call; false: over mcp.calls_per_minute.
func (l *limiter) call(agent string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.getLocked(agent, now)
	if u.calls >= l.calls {
		return false
	}
	u.calls++
	return true
}

// rowsLeft is how many rows agent may still get this hour.
func (l *limiter) rowsLeft(agent string, now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(0, l.rows-l.getLocked(agent, now).rows)
}

// reserveRows sets aside up to n of the rows agent may still have this hour and returns
// how many (0: none left). Concurrent calls cannot together go past the limit; tookRows
// with a negative count gives back what was not used.
func (l *limiter) reserveRows(agent string, now time.Time, n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.getLocked(agent, now)
	g := max(0, min(n, l.rows-u.rows))
	u.rows += g
	return g
}

// tookRows counts rows returned to agent.
func (l *limiter) tookRows(agent string, now time.Time, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.getLocked(agent, now).rows += n
}

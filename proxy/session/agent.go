package session

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// The gateway's MCP server runs an agent's statement by connecting to the PostgreSQL proxy
// of its own process as a client, with the agent's token. What the token cannot say — the
// tool, and the MCP client's name and version — travels beside it: the MCP server issues a
// one-time ticket for the call here and sends it as the startup parameter AgentTicketParam;
// the proxy takes the ticket back out of the parameters (PostgreSQL never sees it) and
// redeems it. The ticket only names an entry of this process's memory, so nothing a client
// connection sends can make up an agent part: a ticket that is unknown (forged, or issued
// by an MCP server in another process), used before, expired, or issued for another
// identity refuses the connection.

// AgentTicketParam is the startup parameter that carries an agent ticket.
const AgentTicketParam = "gatehouse.agent_ticket"

// AgentTicketTTL is how long a ticket may wait to be redeemed: the MCP server connects at
// once.
const AgentTicketTTL = 30 * time.Second

// AgentCall is one tool call of the MCP server, as the proxy learns it from a ticket.
type AgentCall struct {
	// Issuer and Subject are the identity the call was made with: the connection's token
	// must be the same identity's.
	Issuer, Subject string
	// Agent is the request part rules see (request.agent).
	Agent schemas.AgentRequest
	// MCPSession is the MCP session's audit session; Call the call's number in it.
	MCPSession string
	Call       uint64
}

// Errors of Redeem.
var (
	ErrTicketUnknown  = errors.New("agent ticket unknown or already used (tickets are one-time, and only the MCP server in the PostgreSQL proxy's own process issues them)")
	ErrTicketExpired  = errors.New("agent ticket expired")
	ErrTicketIdentity = errors.New("agent ticket issued for another identity than the token's")
)

// AgentCalls is the process's registry of agent tickets. The zero value is not usable:
// NewAgentCalls.
type AgentCalls struct {
	mu      sync.Mutex
	tickets map[string]agentTicket
	now     func() time.Time
}

type agentTicket struct {
	call    AgentCall
	expires time.Time
}

// NewAgentCalls returns an empty registry.
func NewAgentCalls() *AgentCalls {
	return &AgentCalls{tickets: map[string]agentTicket{}, now: time.Now}
}

// Issue registers c and returns its ticket, valid once within ttl.
func (a *AgentCalls) Issue(c AgentCall, ttl time.Duration) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	t := hex.EncodeToString(b[:])
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	// Tickets not redeemed (the connection failed) go when they expire.
	for k, e := range a.tickets {
		if now.After(e.expires) {
			delete(a.tickets, k)
		}
	}
	a.tickets[t] = agentTicket{call: c, expires: now.Add(ttl)}
	return t, nil
}

// Redeem takes ticket out of the registry (whatever the outcome: a ticket is tried once)
// and returns its call, if it has not expired and was issued for the identity (issuer,
// subject).
func (a *AgentCalls) Redeem(ticket, issuer, subject string) (AgentCall, error) {
	if a == nil {
		return AgentCall{}, ErrTicketUnknown
	}
	a.mu.Lock()
	e, ok := a.tickets[ticket]
	delete(a.tickets, ticket)
	a.mu.Unlock()
	switch {
	case !ok:
		return AgentCall{}, ErrTicketUnknown
	case a.now().After(e.expires):
		return AgentCall{}, ErrTicketExpired
	case e.call.Issuer != issuer || e.call.Subject != subject:
		return AgentCall{}, ErrTicketIdentity
	}
	return e.call, nil
}

package postgres

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/services/identity"
)

// An agent ticket comes only from the MCP server of the gateway's own process, over
// loopback: one from anywhere else is refused before the token is looked at, even where
// plaintext tokens are allowed; and the parameter is never left to reach the backend.
func TestAgentTicketIsRefusedOffLoopback(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	agents := session.NewAgentCalls()
	ticket, err := agents.Issue(session.AgentCall{Issuer: "i", Subject: "s"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	in := startupSeed(map[string]string{"user": "u", "database": "demo", session.AgentTicketParam: ticket}, protocolV3, "a.b.c")
	s := New(Config{StartupTimeout: time.Second, MaxMessageBytes: 1 << 16, AllowPlaintextTokens: true, AgentCalls: agents}, oneResource{},
		identity.NewVerifier(context.Background(), nil, log), nil, nil, prometheus.NewRegistry(), log)
	st, err := s.startup(&remoteConn{fakeConn{r: bytes.NewReader(in)}})
	var se *startupError
	if !errors.As(err, &se) || se.code != "28000" || se.check != "agent_ticket" {
		t.Fatalf("a ticket off loopback: got %v, want 28000 agent_ticket", err)
	}
	if _, ok := st.params[session.AgentTicketParam]; ok {
		t.Fatalf("the ticket is still among the startup parameters")
	}
	// From loopback the same startup gets as far as the token check (a bad token: the
	// ticket is not redeemed before the token is verified).
	_, err = s.startup(&fakeConn{r: bytes.NewReader(in)})
	if !errors.As(err, &se) || se.code != "28P01" {
		t.Fatalf("loopback: %v", err)
	}
}

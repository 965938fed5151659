// Package mcp is the Model Context Protocol server of the gateway: AI agents call its
// tools over streamable HTTP (mounted on the gateway's HTTP server, target mcp; `gatehouse
// mcp` bridges stdio to it), and every tool runs through the same policy, masking,
// approvals and recording as the protocol proxies.
//
// The sequence of one call:
//
//  1. HTTP: the bearer token is verified (services/identity: signature, issuer, audience,
//     expiry; a revoked identity is refused). Without one, or with a bad one, the answer is
//     401 with WWW-Authenticate naming the protected-resource metadata (RFC 9728), served
//     at /.well-known/oauth-protected-resource<path>. The request body is bounded, and the
//     requests of one agent per minute too (429).
//  2. JSON-RPC: the official SDK (github.com/modelcontextprotocol/go-sdk) reads the request;
//     a malformed one is refused by it with a JSON-RPC error. The MCP session is tied to
//     the identity that opened it: another token cannot use it.
//  3. Tool call: the agent's calls per minute are counted (over the limit: refused), the
//     call is recorded (mcp.call) in the MCP session's trail (resource _mcp) before it
//     runs — if the trail cannot take it, the call is refused — and its answer after
//     (mcp.result).
//  4. query: the statement goes to the gateway's own PostgreSQL proxy, over loopback, as
//     a PostgreSQL client whose password is the agent's token: the proxy authenticates
//     the agent, decides, masks by lineage, holds for approval and records, exactly as
//     for any client. The result is bounded (rows, bytes, time; rows per hour per agent)
//     and returned as structured content. A statement held for approval (the proxy's
//     NOTICE names the approval) is parked: the tool returns the approval id at once, the
//     gateway keeps the connection (a bounded number per agent) and approval_status
//     delivers the outcome once decided.
//
// A protocol package: it imports proxy/session, services/ and schemas only.
package mcp

// Package postgres is Gatehouse's PostgreSQL wire-protocol proxy.
//
// Message sequence as the proxy sees it:
//
//	client                         proxy                                backend
//	SSLRequest / GSSENCRequest  →  'S' + TLS handshake, or 'N'
//	StartupMessage              →  resolve resource from database
//	                            ←  AuthenticationCleartextPassword
//	PasswordMessage (token)     →  verify token (issuer, signature, audience, expiry)
//	                                                              →  connect with the held credential
//	                                                                 (SCRAM-SHA-256, md5 or trust)
//	                            ←  AuthenticationOk, ParameterStatus*, BackendKeyData
//	                               (real backend PID, proxy-generated secret), ReadyForQuery
//	Query / Parse               →  session.OnQuery: db.query event, policy decision,
//	                               decision event; allowed → forward, denied → ErrorResponse
//	                               42501 in its place in the pipeline (the statement never
//	                               reaches the backend; in a transaction the backend is made
//	                               to raise the same error so the transaction fails as in PG);
//	                               require_approval → held (approval.go): NoticeResponse, wait
//	                               for GH_APPROVALS; a cancel or disconnect withdraws it
//	Bind/Describe/Execute/Sync  →  forwarded raw, in order; Execute records its Bind
//	                               parameters (db.bind); a re-executed prepared statement is
//	                               decided again (policy changes reach it) →
//	FunctionCall                →  function OID resolved on the backend (answers not
//	                               relayed), decided as "SELECT name()", then forwarded;
//	                               discarded, as the backend discards it, in a pipeline that
//	                               failed before its Sync
//	                            ←  results relayed raw; RowDescription/DataRow/CommandComplete/
//	                               ErrorResponse recorded as bounded db.result.chunk and
//	                               db.query.done events. With a mask decision, DataRows (and
//	                               COPY TO lines) are rewritten with masked values first
//	                               (masking.go; source columns via catalog.go)
//	Terminate / EOF             →  session.end, then session.sealed (signed chain)
//	revocation / token expiry   ←  FATAL 57P01, in-flight statement cancelled on the backend
//
// Messages are forwarded as the raw bytes received, never re-encoded, and the proxy flushes
// only when no further message is already buffered, so pipelined traffic stays pipelined.
// Every forwarded message that the backend answers is tracked in order (relay.go: entry),
// which is how the proxy's own answers keep their place and results are attributed to the
// right statement. CancelRequest is mapped through the proxy's own secret (cancel.go).
// Names of prepared statements and cursors are kept as the backend keeps them, however they
// were made, so that a name is decided and masked as what it stands for (names.go); a
// statement run by name (EXECUTE, FETCH) is bound by the decision of what it runs, an
// approval included. A panic in a session's loops ends that session (internal_error), not
// the process.
// Protocol code talks to its session (proxy/session), never to NATS.
//
// Files: conn.go is a session's core (its state, start and end); client.go the client
// loop, which hands each message to its sub-protocol: simple.go (Query), extended.go
// (Parse, Bind, Describe, Execute, Close, Sync, Flush and the pipeline's state), copy.go
// (COPY both ways), funccall.go (FunctionCall); backend.go the backend loop, which routes
// each backend message to the entry it answers; relay.go the queue of those entries.
package postgres

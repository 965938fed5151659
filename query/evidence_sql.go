package query

// The evidence reports' SQL. Every report reads the events of its range; {db} is the
// database, {range} the range condition, {statements} the statements subquery below.
// An identity is shown by its name (the issuer's name claim) and its subject, the name
// falling back to the subject where events carry none (recorded before names, or a token
// without a name claim). Everything here runs on ClickHouse 18.16: one JOIN per SELECT, no JSON functions but
// visitParam*, no window functions.

// Outcomes of a statement, each named as itself (the access report counts them, the
// denials and privileged reports name them per statement):
//
//   - allowed, masked: ran, under an allow or a mask decision
//   - denied: refused by a rule (or by the gateway before asking the policy)
//   - approved: held for approval, approved, and run (held while the client waited, or a
//     fail-fast approval used by the identical statement)
//   - approval_denied, approval_expired, approval_cancelled: held, and not run: an approver
//     denied it; its deadline passed undecided; the client cancelled or went away
//   - approval_pending: held, an approval requested, no outcome in the trail: a fail-fast
//     request (refused; the identical statement runs once approved, and is counted as
//     approved then), or a hold still waiting when the report ran
//   - held_no_outcome: held with no approval of its own in the trail: run again while its
//     fail-fast approval was pending, sent inside a pipeline, refused because approvals
//     were unavailable, or recorded before approval events named their statement
//   - no_decision: recorded without a decision (an execution of an unknown portal, which
//     the backend refused)

// heldOutcomes are the outcomes of statements a rule held for approval.
const heldOutcomes = `('approved', 'approval_denied', 'approval_expired', 'approval_cancelled', 'approval_pending', 'held_no_outcome')`

// sshTextSQL is an SSH request (the ssh.request payload sshreq) in one line, as
// SSHRequestText writes it: the command of an exec, `shell`, `subsystem sftp`,
// `sftp write /path`, `open direct-tcpip db:5432`. Only the fields of the request's kind are
// read: visitParam* finds the first "name": in the text, and a command could spell one.
const sshTextSQL = `multiIf(ssh_request = 'exec', visitParamExtractString(sshreq, 'command'),
			ssh_request = 'subsystem', concat('subsystem ', visitParamExtractString(sshreq, 'subsystem')),
			ssh_request = 'sftp', concat('sftp ', visitParamExtractString(sshreq, 'sftp_op'), ' ', visitParamExtractString(sshreq, 'path'),
				if(visitParamExtractString(sshreq, 'target') = '', '', concat(' ', visitParamExtractString(sshreq, 'target')))),
			ssh_request = 'open' AND visitParamExtractString(sshreq, 'host') != '', concat('open ', visitParamExtractString(sshreq, 'channel_type'), ' ',
				visitParamExtractString(sshreq, 'host'), ':', toString(visitParamExtractUInt(sshreq, 'port'))),
			ssh_request = 'open', concat('open ', visitParamExtractString(sshreq, 'channel_type')),
			ssh_request = 'tcpip-forward', concat('tcpip-forward ', visitParamExtractString(sshreq, 'host'), ':', toString(visitParamExtractUInt(sshreq, 'port'))),
			ssh_request = 'pty-req', concat('pty-req ', visitParamExtractString(sshreq, 'term'), ' ', toString(visitParamExtractUInt(sshreq, 'cols')), 'x',
				toString(visitParamExtractUInt(sshreq, 'rows'))),
			ssh_request = 'window-change', concat('window-change ', toString(visitParamExtractUInt(sshreq, 'cols')), 'x', toString(visitParamExtractUInt(sshreq, 'rows'))),
			ssh_request = 'env', concat('env ', visitParamExtractString(sshreq, 'env_name')),
			ssh_request)`

// sshPrivilegedSQL says whether an SSH request is one the privileged report lists: what
// runs a program or changes the host (exec, shell, a subsystem other than sftp, an sftp
// operation that writes), and port forwarding (a way into the host's network).
const sshPrivilegedSQL = `(ssh_request IN ('exec', 'shell', 'tcpip-forward')
			OR (ssh_request = 'subsystem' AND visitParamExtractString(sshreq, 'subsystem') != 'sftp')
			OR (ssh_request = 'open' AND visitParamExtractString(sshreq, 'channel_type') IN ('direct-tcpip', 'forwarded-tcpip'))
			OR (ssh_request = 'sftp' AND visitParamExtractString(sshreq, 'sftp_op') IN ('write', 'remove', 'rename', 'mkdir', 'rmdir', 'setstat', 'symlink')))`

// statementsSQL is one row per statement in the range (session_id, qid), with its decision
// and outcome: a statement's db.query (or an SSH request's ssh.request), decision and
// approval events share its query_id. Grouping by statement also makes a row stored twice
// count once. For an SSH request, fingerprint is the request itself (sshTextSQL) and kinds,
// when the decision names none, its kind (exec, shell, sftp_write, ...).
const statementsSQL = `
	SELECT session_id, visitParamExtractUInt(payload, 'query_id') AS qid,
		any(identity_sub) AS sub, anyIf(identity_name, identity_name != '') AS nm, any(identity_on_behalf_of) AS obo, any(resource) AS res,
		minIf(time_us, type IN ('db.query', 'ssh.request')) AS t,
		anyIf(payload, type = 'decision') AS decision,
		visitParamExtractString(decision, 'effect') AS effect,
		max(type = 'ssh.request') AS is_ssh,
		anyIf(payload, type = 'ssh.request') AS sshreq,
		visitParamExtractString(sshreq, 'request') AS ssh_request,
		if(is_ssh, ` + sshTextSQL + `, visitParamExtractString(decision, 'fingerprint')) AS fingerprint,
		if(is_ssh AND visitParamExtractRaw(decision, 'kinds') IN ('', '[]'),
			concat('["', if(ssh_request = 'sftp', concat('sftp_', visitParamExtractString(sshreq, 'sftp_op')), ssh_request), '"]'),
			visitParamExtractRaw(decision, 'kinds')) AS kinds,
		if(is_ssh, ` + sshPrivilegedSQL + `, match(visitParamExtractRaw(decision, 'kinds'), ` + privilegedKinds + `)) AS privileged,
		max(type = 'approval.used' OR (type = 'approval.decided' AND visitParamExtractString(payload, 'outcome') = 'approved')) AS was_approved,
		max(type = 'approval.decided' AND visitParamExtractString(payload, 'outcome') = 'denied') AS was_denied,
		max(type = 'approval.expired') AS was_expired,
		max(type = 'approval.cancelled') AS was_cancelled,
		max(type = 'approval.requested') AS was_requested,
		multiIf(effect = 'allow', 'allowed', effect = 'mask', 'masked', effect = 'deny', 'denied', effect != 'require_approval', 'no_decision',
			was_approved, 'approved', was_denied, 'approval_denied', was_expired, 'approval_expired', was_cancelled, 'approval_cancelled',
			was_requested, 'approval_pending', 'held_no_outcome') AS outcome,
		anyIf(visitParamExtractString(payload, 'approval_id'), type IN ('approval.requested', 'approval.used')) AS approval,
		arrayStringConcat(arraySort(groupUniqArrayIf(visitParamExtractString(payload, 'by'),
			type = 'approval.decided' AND visitParamExtractString(payload, 'decision') = 'approve')), ' ') AS held_approvers,
		anyIf(visitParamExtractRaw(payload, 'approved_by'), type = 'approval.used') AS used_approvers,
		if(used_approvers != '', replaceAll(replaceRegexpAll(used_approvers, '[\\[\\]"]', ''), ',', ' '), held_approvers) AS approvers,
		minIf(time_us, type = 'approval.requested') AS requested_us,
		maxIf(time_us, type = 'approval.decided' AND visitParamExtractString(payload, 'outcome') = 'approved') AS approved_us,
		anyIf(visitParamExtractString(payload, 'requested_at'), type = 'approval.used') AS used_requested,
		anyIf(visitParamExtractString(payload, 'approved_at'), type = 'approval.used') AS used_approved,
		multiIf(outcome != 'approved', '',
			used_approved != '', toString(toInt64(toUnixTimestamp(parseDateTimeBestEffortOrZero(used_approved))) - toInt64(toUnixTimestamp(parseDateTimeBestEffortOrZero(used_requested)))),
			requested_us > 0 AND approved_us >= requested_us, toString(intDiv(approved_us - requested_us, 1000000)), '') AS approve_seconds,
		anyIf(visitParamExtractString(payload, 'by'), type = 'approval.decided' AND visitParamExtractString(payload, 'outcome') = 'denied') AS denied_by,
		anyIf(visitParamExtractString(payload, 'reason'), type = 'approval.decided' AND visitParamExtractString(payload, 'outcome') = 'denied') AS denial_reason
	FROM {db}.events
	WHERE {range} AND resource != '_config'
		AND type IN ('db.query', 'ssh.request', 'decision', 'approval.requested', 'approval.decided', 'approval.expired', 'approval.cancelled', 'approval.used')
	GROUP BY session_id, qid
	HAVING max(type IN ('db.query', 'ssh.request'))`

// sessionEndings classifies how the gateway ended a session (session.terminated): revoked
// (an identity, session or grant revocation), grant_expired (the grant it used expired:
// Gatehouse revoked it), token_expired, or other (max_lifetime, settings_changed).
const sessionEnding = `multiIf(visitParamExtractString(payload, 'cause') = 'revoked' AND visitParamExtractString(payload, 'by') = 'gatehouse'
			AND visitParamExtractString(payload, 'revocation') LIKE 'grant:%', 'grant_expired',
		visitParamExtractString(payload, 'cause') = 'revoked', 'revoked',
		visitParamExtractString(payload, 'cause') = 'token_expired', 'token_expired', 'other')`

// privilegedKinds are the statement kinds the privileged report lists: writes and schema
// changes.
const privilegedKinds = `'"(insert|update|delete|merge|truncate|copy_from|grant|revoke|rename|comment|index|view|create_[a-z_]+|alter_[a-z_]+|drop_[a-z_]+)"'`

// evidenceReports are the reports, their columns in order (documented in docs/evidence.md).
var evidenceReports = map[string]struct {
	columns []string
	sql     string
}{
	// Who accessed which resource: sessions, and every statement counted by its outcome;
	// sessions the gateway ended, by why (CC6.1, CC6.3). statements = allowed + masked +
	// denied + held + no_decision; held = approved + approval_denied + approval_expired +
	// approval_cancelled + approval_pending + held_no_outcome.
	"access": {[]string{"identity", "subject", "on_behalf_of", "resource", "sessions", "statements", "allowed", "masked", "denied",
		"held", "approved", "approval_denied", "approval_expired", "approval_cancelled", "approval_pending", "held_no_outcome",
		"no_decision", "sessions_revoked", "sessions_grant_expired", "sessions_token_expired", "sessions_ended_other", "first", "last"}, `
		SELECT if(anyIf(nm, nm != '') = '', sub, anyIf(nm, nm != '')), sub, any(obo), res, sum(started), sum(stmt),
			countIf(outcome = 'allowed'), countIf(outcome = 'masked'), countIf(outcome = 'denied'),
			countIf(outcome IN ` + heldOutcomes + `), countIf(outcome = 'approved'), countIf(outcome = 'approval_denied'),
			countIf(outcome = 'approval_expired'), countIf(outcome = 'approval_cancelled'), countIf(outcome = 'approval_pending'),
			countIf(outcome = 'held_no_outcome'), countIf(outcome = 'no_decision'),
			countIf(ended = 'revoked'), countIf(ended = 'grant_expired'), countIf(ended = 'token_expired'), countIf(ended = 'other'),
			toString(toDateTime(intDiv(min(t0), 1000000))), toString(toDateTime(intDiv(max(t1), 1000000)))
		FROM (
			SELECT sub, nm, obo, res, toUInt8(0) AS started, toUInt8(1) AS stmt, outcome, '' AS ended, t AS t0, t AS t1
			FROM ({statements})
			UNION ALL
			SELECT any(identity_sub) AS sub, anyIf(identity_name, identity_name != '') AS nm, any(identity_on_behalf_of) AS obo,
				any(resource) AS res, max(type = 'session.start') AS started,
				toUInt8(0) AS stmt, '' AS outcome, anyIf(` + sessionEnding + `, type = 'session.terminated') AS ended,
				min(time_us) AS t0, max(time_us) AS t1
			FROM {db}.events
			WHERE {range} AND resource != '_config' AND type != 'auth.failed'
			GROUP BY session_id
		)
		GROUP BY sub, res ORDER BY sub, res`},
	// Statements that did not run: denied by a rule, or held and not approved, with the
	// rule, and the approver who denied (CC7.2).
	"denials": {[]string{"time", "identity", "subject", "resource", "session", "effect", "outcome", "policy", "rule", "reason", "fingerprint",
		"approval", "denied_by", "denial_reason"}, `
		SELECT toString(toDateTime(intDiv(t, 1000000))), if(nm = '', sub, nm), sub, res, session_id, effect, outcome, visitParamExtractString(decision, 'policy'),
			visitParamExtractString(decision, 'rule'), visitParamExtractString(decision, 'reason'), fingerprint,
			approval, denied_by, denial_reason
		FROM ({statements})
		WHERE outcome NOT IN ('allowed', 'masked', 'approved', 'no_decision')
		ORDER BY t, session_id, qid`},
	// Writes and schema changes attempted on resources with a label (default
	// env=production), each with its outcome, who approved it and the time from request to
	// approval (CC6.2, CC8.1).
	"privileged": {[]string{"time", "identity", "subject", "resource", "session", "kinds", "effect", "outcome", "rule", "approval", "approved_by",
		"seconds_to_approve"}, `
		SELECT toString(toDateTime(intDiv(t, 1000000))), if(nm = '', sub, nm), sub, res, session_id, kinds, effect, outcome,
			visitParamExtractString(decision, 'rule'), approval, if(outcome = 'approved', approvers, ''), approve_seconds
		FROM ({statements})
		WHERE privileged
			AND session_id IN (SELECT session_id FROM {db}.events WHERE type = 'session.start' AND position(visitParamExtractRaw(payload, 'labels'), ?) > 0)
		ORDER BY t, session_id, qid`},
	// Grants created, revoked and expired, with who approved, who revoked and why
	// (CC6.2, CC6.3). A grant revoked before grant.revoked existed was recorded as
	// grant.expired without an expiry, before its expiry: it is shown as revoked, with the
	// revocation's author and reason; an old expiry takes its time from grant.created.
	"grants": {[]string{"time", "event", "grant", "identity", "subject", "resource", "role", "expires", "approved_by", "reason",
		"revoked_by", "revoke_reason", "ended_sessions"}, `
		SELECT toString(toDateTime(intDiv(time_us, 1000000))),
			if(old_revoked, 'grant.revoked', type), grant_id, if(identity_name = '', identity_sub, identity_name), identity_sub, visitParamExtractString(payload, 'resource'),
			visitParamExtractString(payload, 'role'), if(own_expires != '', own_expires, created_expires),
			replaceAll(replaceRegexpAll(visitParamExtractRaw(payload, 'approved_by'), '[\\[\\]"]', ''), ',', ' '),
			if(type = 'grant.created', visitParamExtractString(payload, 'reason'), ''),
			multiIf(type = 'grant.revoked', visitParamExtractString(payload, 'by'), old_revoked, rv_by, ''),
			multiIf(type = 'grant.revoked', visitParamExtractString(payload, 'reason'), old_revoked, rv_reason, ''),
			multiIf(type = 'grant.created', '', type = 'grant.revoked' OR old_revoked, 'true', visitParamExtractRaw(payload, 'ended_sessions'))
		FROM (
			SELECT time_us, id, type, identity_sub, identity_name, payload, grant_id, own_expires, created_expires,
				type = 'grant.expired' AND own_expires = '' AND created_expires != ''
					AND intDiv(time_us, 1000000) < toUnixTimestamp(parseDateTimeBestEffortOrZero(created_expires)) AS old_revoked
			FROM (
				SELECT time_us, id, type, identity_sub, identity_name, payload, visitParamExtractString(payload, 'grant_id') AS grant_id,
					visitParamExtractString(payload, 'expires') AS own_expires
				FROM {db}.events
				WHERE {range} AND type IN ('grant.created', 'grant.revoked', 'grant.expired')
				ORDER BY time_us, id LIMIT 1 BY id
			) ANY LEFT JOIN (
				SELECT visitParamExtractString(payload, 'grant_id') AS grant_id, any(visitParamExtractString(payload, 'expires')) AS created_expires
				FROM {db}.events WHERE type = 'grant.created' GROUP BY grant_id
			) USING grant_id
		) ANY LEFT JOIN (
			SELECT visitParamExtractString(payload, 'value') AS grant_id, any(if(identity_name = '', identity_sub, identity_name)) AS rv_by, any(visitParamExtractString(payload, 'reason')) AS rv_reason
			FROM {db}.events
			WHERE type = 'revocation' AND visitParamExtractString(payload, 'kind') = 'grant' AND identity_sub != 'gatehouse'
				AND visitParamExtractRaw(payload, 'lifted') != 'true'
			GROUP BY grant_id
		) USING grant_id
		ORDER BY time_us, id`},
	// What AI agents did through the MCP server: per agent, the person it acted for, the
	// resource and the tool, its tool calls counted by how each ended, and the rows they
	// returned. The statements themselves are in access, denials and privileged too (the
	// PostgreSQL proxy recorded them in the resource's sessions).
	"agents": {[]string{"identity", "subject", "on_behalf_of", "resource", "tool", "calls", "ok", "limited", "denied", "pending_approval",
		"expired", "refused", "error", "no_result", "rows", "first", "last"}, `
		SELECT if(anyIf(nm, nm != '') = '', sub, anyIf(nm, nm != '')), sub, obo, target, tool, count(),
			countIf(status = 'ok'), countIf(status = 'limited'), countIf(status = 'denied'), countIf(status = 'pending_approval'),
			countIf(status = 'expired'), countIf(status = 'refused'), countIf(status = 'error'), countIf(status = ''),
			sum(rows), toString(toDateTime(intDiv(min(t), 1000000))), toString(toDateTime(intDiv(max(t), 1000000)))
		FROM (
			SELECT session_id, visitParamExtractUInt(payload, 'query_id') AS qid,
				any(identity_sub) AS sub, anyIf(identity_name, identity_name != '') AS nm, any(identity_on_behalf_of) AS obo,
				anyIf(visitParamExtractString(payload, 'tool'), type = 'mcp.call') AS tool,
				anyIf(visitParamExtractString(payload, 'target'), type = 'mcp.call') AS target,
				anyIf(visitParamExtractString(payload, 'status'), type = 'mcp.result') AS status,
				anyIf(visitParamExtractUInt(payload, 'rows'), type = 'mcp.result') AS rows,
				min(time_us) AS t
			FROM {db}.events
			WHERE {range} AND resource = '_mcp' AND type IN ('mcp.call', 'mcp.result')
			GROUP BY session_id, qid
			HAVING max(type = 'mcp.call')
		)
		GROUP BY sub, obo, target, tool ORDER BY sub, obo, target, tool`},
	// Policy and resource changes: who changed what, when, with the diff, and the policy
	// revision in force after it (0 for a resource, and for what the config file seeded)
	// (CC6.1, CC8.1). {changes} narrows it to one kind and name (kind=, name=).
	"changes": {[]string{"time", "by", "by_subject", "kind", "name", "action", "source", "diff", "revision"}, `
		SELECT toString(toDateTime(intDiv(time_us, 1000000))), if(identity_name = '', identity_sub, identity_name), identity_sub, visitParamExtractString(payload, 'kind'),
			visitParamExtractString(payload, 'name'), visitParamExtractString(payload, 'action'), visitParamExtractString(payload, 'source'),
			visitParamExtractString(payload, 'diff'), policy_revision
		FROM {db}.events
		WHERE {range} AND type = 'policy.changed'{changes}
		ORDER BY time_us, id LIMIT 1 BY id`},
}

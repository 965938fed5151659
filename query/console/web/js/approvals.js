// Approvals (/ and /approvals): the pending approvals the person may decide, approve or
// deny with a reason, live (polled every 2 s while the tab is visible), and the recently
// decided ones.
import { h, clear, announce, time, relative, errorText, table, badge, who, field } from './dom.js';
import { api } from './api.js';

const POLL_MS = 2000;

// printable writes the characters that could make a statement read otherwise than it
// runs (control, format and bidirectional characters) as escapes; newlines and tabs stay.
export function printable(s) {
  return String(s ?? '').replace(/[\p{Cc}\p{Cf}\p{Co}\p{Cn}\u2028\u2029]/gu, c => {
    if (c === '\n' || c === '\t') return c;
    return '\\u{' + c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0') + '}';
  });
}

function canDecide(a, me) {
  if (a.status !== 'pending') return false;
  if (me.subject === a.requester?.subject || (a.requester?.on_behalf_of && me.subject === a.requester.on_behalf_of)) return false;
  return (a.request?.approvers || []).some(g => me.groups.includes(g));
}

function isOwn(a, me) {
  return a.requester?.subject === me.subject;
}

function what(a) {
  const r = a.request || {};
  if (r.kind === 'grant') return `Grant of role ${r.grant_role} on ${a.resource}`;
  return `Statement on ${a.resource}`;
}

function grantFor(r) {
  const s = r.grant_seconds || 0;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}

export function render(main, ctx) {
  const me = ctx.me;
  ctx.heading('Approvals');
  const status = h('p', { class: 'muted', id: 'approvals-status', 'data-testid': 'approvals-status', text: 'Loading…' });
  const pollError = h('div', { id: 'approvals-error', 'data-testid': 'approvals-error', class: 'error', role: 'alert' });
  const decideList = h('ul', { class: 'cards', id: 'approvals-pending', 'data-testid': 'approvals-pending' });
  const waitingList = h('ul', { class: 'cards', id: 'approvals-waiting', 'data-testid': 'approvals-waiting' });
  const waitingEmpty = h('p', { class: 'muted', text: 'None.', hidden: true });
  const recent = h('div', { id: 'approvals-recent', 'data-testid': 'approvals-recent' });
  const pauseNote = h('p', { class: 'muted', id: 'approvals-live', text: 'Updates every 2 seconds while this tab is visible.' });
  main.append(
    pauseNote, pollError,
    h('section', { 'aria-labelledby': 'h-decide' },
      h('h2', { id: 'h-decide', text: 'Waiting for your decision' }), status, decideList),
    h('section', { 'aria-labelledby': 'h-waiting' },
      h('h2', { id: 'h-waiting', text: 'Other pending approvals' }),
      h('p', { class: 'muted', text: 'Requests you made, and requests you may see but not decide (not in an approver group).' }),
      waitingList, waitingEmpty),
    h('section', { 'aria-labelledby': 'h-recent' },
      h('h2', { id: 'h-recent', text: 'Recently decided' }), recent),
  );

  const items = new Map(); // id -> {li, a, update}
  let first = true;
  let timer = null;
  let stopped = false;
  let inflight = null;

  // The pending list is read every 2 s; the whole list (for "recently decided") at the
  // start, every 30 s, and whenever a request leaves the pending list.
  const RECENT_MS = 30000;
  let recentAt = 0;
  let recentDue = true;

  async function poll() {
    if (stopped) return;
    clearTimeout(timer);
    if (document.visibilityState === 'hidden') return; // resumed by visibilitychange
    inflight = new AbortController();
    try {
      const res = await api('/api/v1/approvals', { signal: inflight.signal, poll: true });
      pollError.textContent = '';
      update(res.approvals || []);
      if (recentDue || Date.now() - recentAt > RECENT_MS) {
        const all = await api('/api/v1/approvals?all=1', { signal: inflight.signal, poll: true });
        recentAt = Date.now();
        recentDue = false;
        renderRecent((all.approvals || []).filter(a => a.status !== 'pending'));
      }
    } catch (err) {
      if (err.name === 'AbortError') return;
      pollError.textContent = 'Approvals could not be read: ' + errorText(err);
      status.textContent = '';
    } finally {
      inflight = null;
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  function update(pending) {
    const seen = new Set();
    for (const a of pending) {
      if (a.status !== 'pending') continue;
      seen.add(a.id);
      const cur = items.get(a.id);
      const mine = canDecide(a, me);
      if (cur && cur.mine === mine) {
        cur.update(a);
        continue;
      }
      if (cur) cur.li.remove();
      const item = approvalItem(a, mine, me, onDecided);
      items.set(a.id, item);
      (mine ? decideList : waitingList).append(item.li);
      if (!first && mine) announce(`New approval request: ${what(a)} from ${a.requester?.name || a.requester?.subject}.`);
    }
    for (const [id, item] of items) {
      if (seen.has(id)) continue;
      item.li.remove();
      items.delete(id);
      recentDue = true;
      if (!item.decidedHere) gone(item);
    }
    const n = decideList.childElementCount;
    status.textContent = n === 0 ? 'Nothing is waiting for your decision.' : `${n} request${n === 1 ? '' : 's'} waiting for your decision.`;
    waitingEmpty.hidden = waitingList.childElementCount > 0;
    first = false;
  }

  // gone announces a request that left the pending list without a decision made here.
  async function gone(item) {
    let how = 'no longer pending';
    try {
      const a = await api('/api/v1/approvals/' + encodeURIComponent(item.a.id));
      how = a.status === 'approved' || a.status === 'denied' ? `${a.status} by ${decidedBy(a)}` : a.status;
    } catch { /* announced without the outcome */ }
    announce(`${what(item.a)} from ${item.a.requester?.name || item.a.requester?.subject}: ${how}.`);
  }

  function onDecided(item, a) {
    item.decidedHere = true;
    recentDue = true;
    announce(`${what(a)}: ${a.status === 'pending' ? 'your approval is counted; more are needed' : a.status}.`);
    if (a.status !== 'pending') {
      item.li.remove();
      items.delete(a.id);
      const n = decideList.childElementCount;
      status.textContent = n === 0 ? 'Nothing is waiting for your decision.' : `${n} request${n === 1 ? '' : 's'} waiting for your decision.`;
      // Focus stays in the list: on the next item's heading, or the section's.
      const next = decideList.querySelector('h3');
      (next || document.getElementById('h-decide')).setAttribute('tabindex', '-1');
      (next || document.getElementById('h-decide')).focus();
    } else {
      item.update(a);
    }
    poll();
  }

  function renderRecent(decided) {
    decided.sort((x, y) => new Date(y.decided_at || y.requested_at) - new Date(x.decided_at || x.requested_at));
    const rows = decided.slice(0, 25);
    clear(recent);
    if (rows.length === 0) {
      recent.append(h('p', { class: 'muted', text: 'No decided approvals to show.' }));
      return;
    }
    recent.append(table('The 25 most recently decided approvals', [
      { label: 'Decided', cell: a => time(a.decided_at, { none: '—' }) },
      { label: 'Request', cell: a => h('span', null, what(a), a.request?.statement ? [h('br'), h('code', { text: short(printable(a.request.statement)) })] : null) },
      { label: 'Requester', cell: a => who(a.requester) },
      { label: 'Outcome', cell: a => badge(a.status, a.status) },
      { label: 'By', cell: a => decidedBy(a) },
      { label: 'Reason', cell: a => (a.denial?.reason || a.closed_reason || (a.approvals || []).map(v => v.reason).filter(Boolean).join('; ') || '') },
    ], rows, { 'data-testid': 'recent-table', id: 'recent-table' }));
  }

  function onVisibility() {
    if (document.visibilityState === 'visible') {
      pauseNote.textContent = 'Updates every 2 seconds while this tab is visible.';
      poll();
    } else {
      pauseNote.textContent = 'Updates paused while this tab is hidden.';
      clearTimeout(timer);
    }
  }
  document.addEventListener('visibilitychange', onVisibility);
  poll();

  return () => {
    stopped = true;
    clearTimeout(timer);
    inflight?.abort();
    document.removeEventListener('visibilitychange', onVisibility);
  };
}

function short(s, n = 100) {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

function decidedBy(a) {
  if (a.denial) return a.denial.by;
  if (a.approvals?.length) return a.approvals.map(v => v.by).join(', ');
  if (a.status === 'expired') return 'deadline passed';
  return '—';
}

// approvalItem is one pending approval: what waits, who asks, why, how far it got, and
// (when the person may decide) a reason field with approve and deny.
function approvalItem(a, mine, me, onDecided) {
  const id = a.id;
  const li = h('li', { class: 'card approval', id: 'approval-' + id, 'data-testid': 'approval', 'data-approval-id': id });
  const item = { li, a, mine, decidedHere: false, update: null };
  const r = a.request || {};
  const progress = h('span', { class: 'progress', 'data-testid': 'approval-progress' });
  const votes = h('span');
  const deadlineRel = h('span', { 'data-testid': 'approval-deadline' });
  const meta = h('dl', { class: 'meta' });
  const add = (k, v) => v !== undefined && v !== null && v !== '' && meta.append(h('dt', { text: k }), h('dd', null, v));
  add('Requester', who(a.requester));
  add('Resource', a.resource);
  if (r.kind === 'grant') {
    add('Role', r.grant_role);
    add('For', grantFor(r));
    add('Reason given', r.reason);
  } else {
    add('Rule', [r.policy, r.rule].filter(Boolean).join(' / ') || null);
    add('Rule’s reason', r.reason);
    add('Mode', r.mode === 'fail_fast' ? `fail fast: the identical statement may run once within ${r.window_seconds || 0} s of approval` : 'hold: the client waits');
  }
  if (r.labels?.length) add('Labels', r.labels.join(', '));
  add('Approvals', h('span', null, progress, ' ', votes));
  add('Approver groups', (r.approvers || []).join(', '));
  add('Requested', h('span', null, time(a.requested_at), ' (', relative(a.requested_at), ')'));
  add('Deadline', h('span', null, deadlineRel, ' — ', time(r.deadline)));

  const headId = 'approval-h-' + id;
  li.append(
    h('div', { class: 'approval-head' },
      h('h3', { id: headId, text: what(a) }),
      badge(r.kind === 'grant' ? 'grant' : 'statement', 'held')),
  );
  if (r.statement) {
    li.append(h('pre', { class: 'statement', 'data-testid': 'approval-statement', 'aria-label': 'Statement (sensitive values masked)' }, printable(r.statement)));
  }
  li.append(meta);

  item.update = x => {
    item.a = x;
    const req = x.request || {};
    progress.textContent = `${(x.approvals || []).length} of ${Math.max(req.required || 1, 1)}`;
    votes.textContent = x.approvals?.length ? '(' + x.approvals.map(v => v.by).join(', ') + ')' : '';
    deadlineRel.textContent = relative(req.deadline);
    const soon = new Date(req.deadline) - Date.now() < 5 * 60 * 1000;
    deadlineRel.className = soon ? 'deadline-soon' : '';
  };
  item.update(a);

  if (!mine) {
    if (isOwn(a, me)) li.append(h('p', { class: 'muted', text: 'You asked for this: someone else in an approver group decides it.' }));
    return item;
  }

  const reason = h('textarea', { id: 'reason-' + id, name: 'reason', rows: 2, 'data-testid': 'approval-reason', maxlength: 1000 });
  const err = h('div', { class: 'error', role: 'alert', id: 'approval-error-' + id, 'data-testid': 'approval-error' });
  const approve = h('button', { type: 'button', class: 'approve', id: 'approve-' + id, 'data-testid': 'approve', 'data-approval-id': id, text: 'Approve' });
  const deny = h('button', { type: 'button', class: 'danger', id: 'deny-' + id, 'data-testid': 'deny', 'data-approval-id': id, text: 'Deny' });
  const form = h('form', { class: 'decide', onsubmit: e => e.preventDefault() },
    field('Reason (required to deny)', reason),
    h('div', { class: 'actions' }, approve, deny),
    err);
  li.append(form);

  async function decide(decision) {
    err.textContent = '';
    reason.removeAttribute('aria-invalid');
    const text = reason.value.trim();
    if (decision === 'deny' && !text) {
      err.textContent = 'A denial needs a reason: say why in the reason field.';
      reason.setAttribute('aria-invalid', 'true');
      reason.focus();
      return;
    }
    approve.disabled = deny.disabled = true;
    try {
      const res = await api(`/api/v1/approvals/${encodeURIComponent(id)}/${decision}`, { method: 'POST', body: { reason: text } });
      onDecided(item, res);
    } catch (e) {
      err.textContent = (decision === 'approve' ? 'Not approved: ' : 'Not denied: ') + errorText(e);
      approve.disabled = deny.disabled = false;
    }
  }
  approve.addEventListener('click', () => decide('approve'));
  deny.addEventListener('click', () => decide('deny'));
  return item;
}

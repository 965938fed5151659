// Session (/sessions/:id): who, where and when; whether the hash chain and the seal
// verify; the timeline of its events (statements and requests with their decisions,
// approvals, masked results, errors), filtered by type and rendered a page at a time (a
// session may have 100,000 events); terminal recordings in the asciinema player.
import { h, clear, time, duration, errorBox, errorText, badge, who, append } from './dom.js';
import { api, query } from './api.js';
import { printable } from './approvals.js';
import { playerSection } from './player.js';

const FIRST = 100; // items rendered at once
const MORE = 200; // items added as the list is scrolled (or "Show more")
const ROWS = 100; // result rows shown per statement

const STATEMENT_TYPES = new Set(['db.query', 'ssh.request', 'http.request']);
const ATTACHED_TYPES = new Set(['decision', 'db.bind', 'db.result.chunk', 'db.query.done', 'approval.requested', 'approval.decided',
  'approval.expired', 'approval.cancelled', 'approval.used', 'http.response', 'http.body', 'http.ws', 'http.done', 'ssh.exit', 'ssh.file']);
const TERMINAL_TYPES = new Set(['ssh.io', 'kube.io']);

// The timeline's filters: an item shows when one of its tags is checked.
const TAGS = [
  ['statement', 'Statements and requests'],
  ['approval', 'Approvals'],
  ['result', 'Results'],
  ['error', 'Errors'],
  ['session', 'Session events'],
  ['terminal', 'Terminal output'],
];

const TYPE_NAMES = {
  'session.start': 'Session started', 'session.end': 'Session ended', 'session.terminated': 'Session terminated by the gateway',
  'session.sealed': 'Session sealed', 'auth.failed': 'Authentication failed', 'db.query': 'SQL statement', 'ssh.request': 'SSH request',
  'http.request': 'HTTP request', 'approval.requested': 'Approval requested', 'approval.decided': 'Approval decided',
  'approval.expired': 'Approval expired', 'approval.cancelled': 'Approval cancelled', 'approval.used': 'Approval used',
  'ssh.io': 'Terminal output (SSH channel)', 'kube.io': 'Terminal output (Kubernetes exec)', 'ssh.file': 'File transfer',
  'policy.changed': 'Policy or resource changed', 'revocation': 'Revocation', 'grant.created': 'Grant created',
  'grant.expired': 'Grant expired', 'grant.revoked': 'Grant revoked', 'audit.retention': 'Retention run',
};

export function render(main, ctx) {
  const id = ctx.params.id;
  const h1 = ctx.heading('Session');
  const ctl = new AbortController();
  const cleanups = [() => ctl.abort()];
  const status = h('p', { class: 'muted', id: 'session-status', 'data-testid': 'session-status', role: 'status', text: 'Loading the session’s events…' });
  main.append(h('p', null, h('a', { href: '/sessions', text: '← Sessions' })), h('p', { class: 'muted' }, 'Session ', h('code', { 'data-testid': 'session-id', text: id })), status);
  load();
  return () => cleanups.forEach(f => f());

  async function load() {
    let res;
    try {
      res = await api('/api/v1/sessions/' + encodeURIComponent(id), { signal: ctl.signal });
    } catch (err) {
      if (err.name === 'AbortError') return;
      status.replaceWith(errorBox(err, 'session-error'));
      return;
    }
    const events = res.events || [];
    status.textContent = `${events.length.toLocaleString()} events.`;
    const model = buildModel(events);
    const name = model.identity ? model.identity.name || model.identity.subject : '';
    if (name || model.resource) {
      h1.textContent = `Session of ${name || 'unknown'} on ${model.resource || 'unknown'}`;
      document.title = h1.textContent + ' · Gatehouse';
    }
    main.append(summarySection(model));
    main.append(verificationSection(id, res, model, ctl.signal));
    const terms = h('section', { id: 'terminals', 'data-testid': 'terminals', 'aria-labelledby': 'h-terminals' });
    main.append(terms);
    terminalsSection(terms, id, events, ctl.signal).then(stop => stop && cleanups.push(stop));
    main.append(timelineSection(model, cleanups));
  }
}

// buildModel folds the events into timeline items: a statement (or SSH or HTTP request)
// with its decision, approvals, results and end; terminal output as one item per channel;
// every other event as itself.
function buildModel(events) {
  const items = [];
  const byQuery = new Map();
  const terminals = new Map();
  const m = { items, start: null, end: null, sealed: null, terminated: null, events: events.length, statements: 0, denied: 0, held: 0, masked: 0, approved: 0, identity: null, resource: '' };
  for (const e of events) {
    const p = e.payload || {};
    if (!m.identity && e.identity?.subject) m.identity = e.identity;
    if (!m.resource) m.resource = e.resource;
    switch (e.type) {
      case 'session.start': m.start = e; break;
      case 'session.end': m.end = e; break;
      case 'session.sealed': m.sealed = e; break;
      case 'session.terminated': m.terminated = e; break;
      case 'decision':
        if (p.effect === 'deny') m.denied++;
        if (p.effect === 'require_approval') m.held++;
        if (p.effect === 'mask') m.masked++;
        break;
      case 'approval.decided': if (p.outcome === 'approved') m.approved++; break;
    }
    if (STATEMENT_TYPES.has(e.type)) {
      m.statements++;
      const it = { kind: 'statement', e, seq: e.seq, decision: null, attached: [], tags: new Set(['statement']) };
      byQuery.set(p.query_id, it);
      items.push(it);
      continue;
    }
    if (ATTACHED_TYPES.has(e.type) && p.query_id && byQuery.has(p.query_id)) {
      const it = byQuery.get(p.query_id);
      if (e.type === 'decision') it.decision = p;
      else it.attached.push(e);
      if (e.type.startsWith('approval.')) it.tags.add('approval');
      if (e.type === 'db.result.chunk' || e.type === 'http.body' || e.type === 'http.ws' || e.type === 'ssh.file') it.tags.add('result');
      if (isError(e)) it.tags.add('error');
      continue;
    }
    if (TERMINAL_TYPES.has(e.type)) {
      const key = e.type + ':' + (e.type === 'ssh.io' ? p.channel : p.query_id);
      let it = terminals.get(key);
      if (!it) {
        it = { kind: 'terminal', e, seq: e.seq, chunks: 0, frames: 0, masked: 0, dropped: 0, tags: new Set(['terminal']) };
        terminals.set(key, it);
        items.push(it);
      }
      it.chunks++;
      it.frames += (p.frames || []).length;
      it.masked += (p.masked || []).reduce((n, x) => n + (x.count || 0), 0);
      it.dropped += p.dropped || 0;
      continue;
    }
    const tags = new Set();
    if (e.type.startsWith('approval.')) tags.add('approval');
    else tags.add('session');
    if (isError(e)) tags.add('error');
    items.push({ kind: 'event', e, seq: e.seq, tags });
  }
  return m;
}

function isError(e) {
  const p = e.payload || {};
  switch (e.type) {
    case 'db.query.done': return p.status === 'error';
    case 'http.done': return p.status === 'error' || p.status === 'refused';
    case 'session.end': return !!p.error;
    case 'auth.failed': return true;
    case 'ssh.exit': return p.ended === 'signal';
  }
  return false;
}

function summarySection(m) {
  const sp = m.start?.payload || {};
  const ep = m.end?.payload || {};
  const dl = h('dl', { class: 'meta summary', id: 'session-summary', 'data-testid': 'session-summary' });
  const add = (k, v) => { if (v !== undefined && v !== null && v !== '') dl.append(h('dt', { text: k }), h('dd', null, v)); };
  add('Who', m.identity ? h('span', null, who(m.identity), m.identity.groups?.length ? h('span', { class: 'muted', text: ' (groups: ' + m.identity.groups.join(', ') + ')' }) : null,
    m.identity.on_behalf_of ? ' on behalf of ' + m.identity.on_behalf_of : null) : null);
  add('Resource', m.resource);
  add('Protocol', (sp.protocol || '') + (sp.login ? ` as ${sp.login}` : '') + (sp.database ? `, database ${sp.database}` : ''));
  add('Client', [sp.client_addr, sp.application_name, sp.tls ? 'TLS' : (m.start ? 'no TLS' : '')].filter(Boolean).join(', '));
  add('Started', m.start ? time(m.start.time) : null);
  add('Ended', m.end ? h('span', null, time(m.end.time), ` (${ep.reason || 'ended'}${ep.error ? ': ' + ep.error : ''})`) : badge('open: no session.end yet', 'pending'));
  if (m.start && m.end) add('Duration', duration((new Date(m.end.time) - new Date(m.start.time)) / 1000));
  if (m.terminated) {
    const tp = m.terminated.payload || {};
    add('Terminated', `${tp.cause}${tp.reason ? ': ' + tp.reason : ''}${tp.by ? ' (by ' + tp.by + ')' : ''}`);
  }
  add('Statements / requests', String(m.statements));
  add('Denied', String(m.denied));
  add('Held for approval', `${m.held} (approved: ${m.approved})`);
  add('Masked', String(m.masked));
  add('Events', m.events.toLocaleString());
  if (sp.labels?.length) add('Labels', sp.labels.join(', '));
  return h('section', { 'aria-labelledby': 'h-summary' }, h('h2', { id: 'h-summary', text: 'Summary' }), dl);
}

// verificationSection says whether the chain (checked by the replay as it streamed) and
// the seal (checked by GET /api/v1/audit/verify?session=) hold.
function verificationSection(id, res, m, signal) {
  const chain = h('p', { id: 'verify-chain', 'data-testid': 'verify-chain' });
  const seal = h('p', { id: 'verify-seal', 'data-testid': 'verify-seal', role: 'status' });
  if (res.chain_ok) {
    chain.className = 'ok-box';
    chain.dataset.status = 'verified';
    chain.append(h('strong', { text: 'Hash chain verified: ' }), `${m.events.toLocaleString()} events in order, none missing or altered.`);
  } else {
    chain.className = 'error';
    chain.dataset.status = 'not-verified';
    chain.append(h('strong', { text: 'Hash chain NOT verified: ' }), res.chain_error || 'the replay did not say why');
  }
  if (!m.sealed) {
    seal.className = 'warn-box';
    seal.dataset.status = 'not-sealed';
    seal.append(h('strong', { text: 'Not sealed yet: ' }), m.end
      ? 'the session has ended; its seal is the last event and may take a few seconds to arrive (or sealing is not configured). Reload to check again.'
      : 'the session is still open (or its gateway was lost); a session is sealed when it ends.');
  } else {
    seal.className = 'notice';
    seal.dataset.status = 'checking';
    seal.textContent = 'Checking the seal…';
    const sp = m.sealed.payload || {};
    api('/api/v1/audit/verify' + query({ session: id }), { signal }).then(v => {
      clear(seal);
      const problems = (v.problems || []).filter(p => !p.session || p.session === id);
      if (problems.length === 0) {
        seal.className = 'ok-box';
        seal.dataset.status = 'verified';
        seal.append(h('strong', { text: 'Seal verified: ' }), `the gateway's Ed25519 signature (key ${sp.key_id}) covers events 1 to ${sp.events}.`);
      } else {
        seal.className = 'error';
        seal.dataset.status = 'not-verified';
        seal.append(h('strong', { text: 'Seal NOT verified: ' }), h('ul', null, problems.map(p => h('li', { text: `${p.kind}${p.seq ? ' at event ' + p.seq : ''}: ${p.detail}` }))));
      }
      if (v.truncated?.length) seal.append(h('p', { text: 'Truncated by retention: ' + v.truncated.map(p => p.detail).join('; ') }));
    }).catch(err => {
      if (err.name === 'AbortError') return;
      seal.className = 'warn-box';
      seal.dataset.status = 'unknown';
      seal.textContent = 'The seal could not be checked: ' + errorText(err);
    });
  }
  return h('section', { id: 'verification', 'data-testid': 'verification', 'aria-labelledby': 'h-verification' },
    h('h2', { id: 'h-verification', text: 'Integrity' }), chain, seal);
}

// terminalsSection lists the session's recorded terminals (SSH channels, Kubernetes
// execs), when its events have any.
async function terminalsSection(sec, id, events, signal) {
  if (!events.some(e => TERMINAL_TYPES.has(e.type))) {
    sec.remove();
    return null;
  }
  let list;
  try {
    list = (await api(`/api/v1/sessions/${encodeURIComponent(id)}/terminals`, { signal })).terminals || [];
  } catch (err) {
    if (err.name === 'AbortError') return null;
    clear(sec).append(h('h2', { id: 'h-terminals', text: 'Terminal recordings' }), errorBox(err, 'terminals-error'));
    return null;
  }
  if (list.length === 0) {
    sec.remove();
    return null;
  }
  return playerSection(sec, id, list);
}

function timelineSection(m, cleanups) {
  const checks = {};
  const counts = {};
  for (const it of m.items) for (const t of it.tags) counts[t] = (counts[t] || 0) + 1;
  const fs = h('fieldset', { id: 'timeline-filters', 'data-testid': 'timeline-filters' },
    h('legend', { text: 'Show' }),
    h('div', { class: 'checks' }, TAGS.map(([tag, label]) => {
      checks[tag] = h('input', { type: 'checkbox', id: 'filter-' + tag, name: tag, checked: true, 'data-testid': 'filter-' + tag });
      return h('label', { for: 'filter-' + tag }, checks[tag], `${label} (${counts[tag] || 0})`);
    })));
  const effect = h('select', { id: 'filter-effect', 'data-testid': 'filter-effect' },
    [['', 'Any decision'], ['allow', 'Allowed'], ['mask', 'Masked'], ['deny', 'Denied'], ['require_approval', 'Held for approval']].map(([v, t]) => h('option', { value: v, text: t })));
  fs.append(h('div', { class: 'field' }, h('label', { for: 'filter-effect', text: 'Decision' }), effect));
  const shown = h('p', { id: 'timeline-count', 'data-testid': 'timeline-count', class: 'muted', role: 'status' });
  const ol = h('ol', { class: 'timeline', id: 'timeline', 'data-testid': 'timeline', 'aria-labelledby': 'h-timeline' });
  const more = h('button', { type: 'button', id: 'timeline-more', 'data-testid': 'timeline-more', text: 'Show more' });
  const sentinel = h('div', { class: 'sentinel', 'aria-hidden': 'true' });
  const sec = h('section', { id: 'timeline-section', 'aria-labelledby': 'h-timeline' },
    h('h2', { id: 'h-timeline', text: 'Timeline' }), fs, shown, ol, sentinel, h('div', { class: 'actions' }, more));

  let filtered = [];
  let rendered = 0;
  function apply() {
    const on = new Set(TAGS.map(([t]) => t).filter(t => checks[t].checked));
    const eff = effect.value;
    filtered = m.items.filter(it => [...it.tags].some(t => on.has(t)) && (!eff || it.decision?.effect === eff));
    rendered = 0;
    clear(ol);
    renderMore(FIRST);
  }
  function renderMore(n) {
    const frag = document.createDocumentFragment();
    const end = Math.min(filtered.length, rendered + n);
    for (; rendered < end; rendered++) frag.append(itemNode(filtered[rendered]));
    ol.append(frag);
    more.hidden = rendered >= filtered.length;
    shown.textContent = filtered.length === 0 ? 'No events match the filters.'
      : `Showing ${rendered.toLocaleString()} of ${filtered.length.toLocaleString()} items${rendered < filtered.length ? ' (more as you scroll)' : ''}.`;
  }
  fs.addEventListener('change', apply);
  more.addEventListener('click', () => {
    const first = rendered;
    renderMore(MORE);
    const li = ol.children[first]; // keyboard users continue from the first new item
    if (li) {
      li.setAttribute('tabindex', '-1');
      li.focus();
    }
  });
  if ('IntersectionObserver' in window) {
    const io = new IntersectionObserver(entries => {
      if (entries.some(e => e.isIntersecting) && rendered < filtered.length) renderMore(MORE);
    }, { rootMargin: '800px 0px' });
    io.observe(sentinel);
    cleanups.push(() => io.disconnect());
  }
  apply();
  return sec;
}

function effectClass(it) {
  if (it.tags.has('error')) return 'has-error';
  return it.decision ? 'eff-' + it.decision.effect : '';
}

function head(e, label, ...rest) {
  return h('div', { class: 'tl-head' },
    h('span', { class: 'seq', text: '#' + e.seq }), time(e.time), h('span', { class: 'tl-type', text: label }), ...rest);
}

function itemNode(it) {
  const e = it.e;
  const li = h('li', { class: effectClass(it), 'data-testid': 'timeline-item', 'data-type': e.type, 'data-seq': e.seq });
  if (it.kind === 'statement') statementNode(li, it);
  else if (it.kind === 'terminal') {
    const p = e.payload || {};
    li.append(head(e, TYPE_NAMES[e.type] || e.type, e.type === 'ssh.io' ? `channel ${p.channel}` : `request ${p.query_id}`),
      h('p', null, `${it.frames.toLocaleString()} frames in ${it.chunks} chunk${it.chunks === 1 ? '' : 's'}`,
        it.masked ? `; ${it.masked} values masked` : '', it.dropped ? `; ${it.dropped} bytes not recorded (limit reached)` : '',
        ' — play it under ', h('a', { href: '#terminals', text: 'Terminal recordings' }), '.'));
  } else eventNode(li, it);
  return li;
}

function sshText(p) {
  switch (p.request) {
    case 'exec': return p.command || '';
    case 'subsystem': return 'subsystem ' + p.subsystem;
    case 'sftp': return `sftp ${p.sftp_op} ${p.path || ''}${p.target ? ' ' + p.target : ''}`;
    case 'open': return `open ${p.channel_type}${p.host ? ` ${p.host}:${p.port}` : ''}`;
    case 'tcpip-forward': return `tcpip-forward ${p.host}:${p.port}`;
    case 'pty-req': return `pty-req ${p.term || ''}${p.cols ? ` ${p.cols}x${p.rows}` : ''}`;
    case 'window-change': return `window-change ${p.cols}x${p.rows}`;
    case 'env': return 'env ' + p.env_name;
    default: return p.request;
  }
}

function statementNode(li, it) {
  const e = it.e;
  const p = e.payload || {};
  const d = it.decision;
  const label = (TYPE_NAMES[e.type] || e.type) + (p.query_id ? ' ' + p.query_id : '');
  li.append(head(e, label, d ? badge(d.effect, d.effect) : badge('no decision', ''), p.truncated || p.body_truncated ? badge('truncated', '') : null));
  let text;
  if (e.type === 'db.query') text = p.sql;
  else if (e.type === 'ssh.request') text = `[channel ${p.channel}] ${sshText(p)}`;
  else text = `${p.method} ${p.path}${p.query ? '?' + p.query : ''}${p.raw_path ? `   (sent as ${p.raw_path})` : ''}`;
  li.append(h('pre', { class: 'statement', 'data-testid': 'timeline-statement' }, printable(text)));
  if (p.kube) li.append(h('p', { class: 'muted', 'data-testid': 'timeline-kube' }, kubeText(p.kube)));
  if (d) {
    const bits = [];
    if (d.policy || d.rule) bits.push(`rule ${[d.policy, d.rule].filter(Boolean).join(' / ')}`);
    else if (d.effect === 'deny') bits.push('no rule allowed it (default deny)');
    if (d.kinds?.length) bits.push('kinds ' + d.kinds.join(', '));
    if (d.tables?.length) bits.push('tables ' + d.tables.join(', '));
    if (d.mask_columns?.length) bits.push('masked columns ' + d.mask_columns.join(', '));
    if (d.mask_detectors?.length) bits.push('detectors ' + d.mask_detectors.join(', '));
    if (d.shadow_effect) bits.push(`shadow policies would ${d.shadow_effect} (${[d.shadow_policy, d.shadow_rule].filter(Boolean).join(' / ')})`);
    li.append(h('p', { class: 'decision', 'data-testid': 'timeline-decision' },
      h('strong', { text: 'Decision: ' }), d.effect, bits.length ? ' — ' + bits.join('; ') : '', d.reason ? h('br') : null, d.reason ? h('span', null, 'Reason: ', d.reason) : null));
  }
  const sub = h('div', { class: 'tl-sub' });
  const chunks = [];
  const bodies = [];
  const ws = [];
  for (const a of it.attached) {
    const q = a.payload || {};
    switch (a.type) {
      case 'db.result.chunk': chunks.push(q); break;
      case 'http.body': bodies.push(q); break;
      case 'http.ws': ws.push(q); break;
      case 'db.bind': sub.append(h('p', null, 'Parameters: ', h('code', { text: printable(JSON.stringify(q.params)) }), q.truncated ? ' (truncated)' : '')); break;
      case 'db.query.done': sub.append(doneNode(q)); break;
      case 'http.response': sub.append(h('p', null, h('strong', { text: 'Response: ' }), `${q.status} from ${q.from}`, headersDetails(q.headers))); break;
      case 'http.done': sub.append(h('p', { class: isError(a) ? 'error' : '' }, h('strong', { text: 'Done: ' }), `${q.status}${q.code ? ' (' + q.code + ')' : ''}, ${q.bytes_out} bytes sent`,
        q.masked ? `, ${q.masked} values masked` : '', q.exit ? `, exit: ${q.exit}` : '', q.error ? ` — ${q.error}` : '', `, ${duration(q.duration_us / 1e6)}`)); break;
      case 'ssh.exit': sub.append(h('p', { class: isError(a) ? 'error' : '' }, h('strong', { text: 'Exit: ' }),
        q.ended === 'exited' ? `status ${q.exit_status}` : q.ended + (q.exit_signal ? ' ' + q.exit_signal : ''), `; ${q.bytes_in} bytes in, ${q.bytes_out} out; ${duration(q.duration_us / 1e6)}`,
        q.stdin_sha256 ? h('span', null, '; stdin SHA-256 ', h('code', { text: q.stdin_sha256 })) : '')); break;
      case 'ssh.file': sub.append(h('p', null, h('strong', { text: 'File: ' }), `${q.direction} ${q.path} (${q.via}), ${q.size} bytes${q.complete ? '' : ', cut off'}; SHA-256 `, h('code', { text: q.sha256 }))); break;
      default: sub.append(approvalLine(a)); break;
    }
  }
  if (e.type === 'http.request') {
    if (p.headers?.length) sub.prepend(headersDetails(p.headers, 'Request headers'));
    if (p.body) sub.prepend(h('details', null, h('summary', { text: `Request body (${p.body_bytes} bytes${p.body_truncated ? ', recorded in part' : ''})` }), h('pre', { class: 'scroll', tabindex: '0', 'aria-label': 'Request body', text: printable(p.body) })));
  }
  if (chunks.length) sub.append(resultDetails(chunks, `Result rows of statement ${p.query_id} (event ${e.seq})`));
  if (bodies.length) {
    const masked = bodies.reduce((n, b) => n + (b.masked || []).reduce((k, x) => k + (x.count || 0), 0), 0);
    sub.append(lazyDetails(`Response body (${bodies.length} chunk${bodies.length === 1 ? '' : 's'}${masked ? `, ${masked} values masked` : ''})`,
      () => h('pre', { class: 'scroll', tabindex: '0', 'aria-label': 'Response body', 'data-testid': 'timeline-result' }, printable(bodies.map(b => b.data).join('')))));
  }
  if (ws.length) {
    sub.append(lazyDetails(`WebSocket messages (${ws.reduce((n, w) => n + (w.frames || []).length, 0)})`,
      () => h('pre', { class: 'scroll', tabindex: '0', 'aria-label': 'WebSocket messages' }, printable(ws.flatMap(w => (w.frames || []).map(f => JSON.stringify(f))).join('\n')))));
  }
  if (sub.childElementCount) li.append(sub);
}

// kubeText is a Kubernetes request as its API server reads it: verb, resource, where.
function kubeText(k) {
  const res = [k.resource, k.subresource].filter(Boolean).join('/');
  const group = k.api_group ? `${k.api_group}/${k.api_version || ''}` : k.api_version || '';
  const where = [k.namespace ? 'namespace ' + k.namespace : '', k.name ? 'name ' + k.name : ''].filter(Boolean).join(', ');
  return `Kubernetes: ${k.verb}${res ? ' ' + res : ''}${group ? ' (' + group + ')' : ''}${where ? ', ' + where : ''}` +
    `${k.container ? ', container ' + k.container : ''}${k.command?.length ? ', command ' + k.command.join(' ') : ''}${k.ports?.length ? ', ports ' + k.ports.join(', ') : ''}`;
}

function doneNode(q) {
  const err = q.error;
  return h('p', { class: q.status === 'error' ? 'error' : '' }, h('strong', { text: 'Done: ' }),
    q.status, q.command_tags?.length ? ` (${q.command_tags.join(', ')})` : '', `, ${q.rows} rows sent`,
    q.rows_recorded !== q.rows ? `, ${q.rows_recorded} recorded` : '', `, ${duration(q.duration_us / 1e6)}`,
    err ? h('span', null, h('br'), `Error ${err.sqlstate} from ${err.from}: ${err.message}`) : '');
}

function approvalLine(a) {
  const q = a.payload || {};
  let text;
  switch (a.type) {
    case 'approval.requested': text = `approval ${q.approval_id} requested from ${(q.approvers || []).join(', ')} (${q.required || 1} needed, ${q.mode}), deadline ${new Date(q.deadline).toLocaleString()}`; break;
    case 'approval.decided': text = `${q.decision === 'approve' ? 'approved' : 'denied'} by ${q.by || a.identity?.subject} via ${q.via}${q.reason ? ': ' + q.reason : ''} — now ${q.outcome}`; break;
    case 'approval.expired': text = 'expired: the deadline passed undecided'; break;
    case 'approval.cancelled': text = 'cancelled: ' + q.reason; break;
    case 'approval.used': text = `fail-fast approval used (approved by ${(q.approved_by || []).join(', ')})`; break;
    default: text = a.type;
  }
  return h('p', { 'data-testid': 'timeline-approval' }, h('strong', { text: 'Approval: ' }), text, ' ', time(a.time, { short: true }));
}

function headersDetails(headers, label = 'Headers') {
  if (!headers?.length) return null;
  return h('details', null, h('summary', { text: `${label} (${headers.length})` }), h('pre', { text: printable(headers.join('\n')) }));
}

// lazyDetails builds its content when first opened: 10,000 closed result tables cost
// nothing.
function lazyDetails(summary, build) {
  const d = h('details', null, h('summary', { text: summary }));
  d.addEventListener('toggle', () => {
    if (d.open && d.childElementCount === 1) d.append(build());
  });
  return d;
}

function resultDetails(chunks, name) {
  const cols = chunks.find(c => c.columns?.length)?.columns || [];
  const rows = chunks.flatMap(c => c.rows || []);
  const masked = new Map(); // column index -> {name, how, count}
  for (const c of chunks) {
    for (const x of c.masked || []) {
      const m = masked.get(x.column) || { name: x.name || cols[x.column]?.name || `column ${x.column + 1}`, how: [x.method, x.by].filter(Boolean).join(' by '), count: 0 };
      m.count += x.count || 0;
      masked.set(x.column, m);
    }
  }
  const truncated = chunks.reduce((n, c) => n + (c.values_truncated || 0), 0);
  const maskedText = [...masked.values()].map(m => `${m.name} ${m.count}×${m.how ? ' (' + m.how + ')' : ''}`).join(', ');
  return lazyDetails(`Result: ${rows.length} row${rows.length === 1 ? '' : 's'} recorded${maskedText ? '; masked: ' + maskedText : ''}`, () => {
    const wrap = h('div');
    const shown = rows.slice(0, ROWS);
    const t = h('table', { 'data-testid': 'timeline-result' },
      h('caption', { class: 'visually-hidden', text: 'Result rows as recorded (masked values as the client got them)' }),
      h('thead', null, h('tr', null, (cols.length ? cols : (rows[0] || []).map((_, i) => ({ name: 'column ' + (i + 1) }))).map((c, i) =>
        h('th', { scope: 'col', text: c.name + (masked.has(i) ? ' (masked)' : '') })))),
      h('tbody', null, shown.map(r => h('tr', null, (r || []).map(v => v === null ? h('td', { class: 'muted', text: 'NULL' }) : h('td', { class: 'mono', text: printable(v) }))))));
    append(wrap, [h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': name }, t)]);
    if (rows.length > ROWS) wrap.append(h('p', { class: 'muted', text: `First ${ROWS} of ${rows.length} recorded rows shown.` }));
    if (truncated) wrap.append(h('p', { class: 'muted', text: `${truncated} values recorded only in part (the client got them whole).` }));
    return wrap;
  });
}

function eventNode(li, it) {
  const e = it.e;
  const p = e.payload || {};
  li.append(head(e, TYPE_NAMES[e.type] || e.type));
  const line = text => li.append(h('p', { text }));
  switch (e.type) {
    case 'session.start': line(`${p.protocol} from ${p.client_addr}${p.client_user ? ', user ' + p.client_user : ''}${p.database ? ', database ' + p.database : ''}${p.login ? ', login ' + p.login : ''}${p.auth_method ? ' (' + p.auth_method + ')' : ''}; audit ${p.audit_mode}`); break;
    case 'session.end': line(`${p.reason}${p.error ? ': ' + p.error : ''}; ${p.statements} statements, ${p.denied} denied${p.held ? ', ' + p.held + ' held' : ''}; ${p.bytes_in} bytes in, ${p.bytes_out} out; ${duration((p.duration_us || 0) / 1e6)}`); break;
    case 'session.terminated': line(`${p.cause}${p.reason ? ': ' + p.reason : ''}${p.revocation ? ' (' + p.revocation + ')' : ''}${p.by ? ', by ' + p.by : ''}${p.in_flight ? '; a running statement was cancelled' : ''}`); break;
    case 'session.sealed': li.append(h('p', null, `${p.events} events sealed with key ${p.key_id}; last hash `, h('code', { text: p.last_hash }))); break;
    case 'auth.failed': line(`${p.check}: ${p.message}`); break;
    default:
      if (e.type.startsWith('approval.')) li.append(approvalLine(e));
      else li.append(h('details', null, h('summary', { text: 'Payload' }), h('pre', { text: printable(JSON.stringify(p, null, 2)) })));
  }
}

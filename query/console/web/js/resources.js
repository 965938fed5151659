// Resources and policies (/resources): what is in force (read-only), the history of
// changes with who, when and the diff, and a "try it" box that asks the policy service what
// it would decide for a statement or a command.
import { h, clear, time, duration, errorBox, badge, field, diffBlock, table } from './dom.js';
import { api, query } from './api.js';
import { parseYAML } from './yaml.js';

// resourceNames lists the resources' names (for other pages' suggestions).
export async function resourceNames(signal) {
  const doc = parseYAML(await api('/api/v1/resources', { text: true, signal }));
  return (doc?.resources || []).map(r => r.name).filter(Boolean);
}

export function render(main, ctx) {
  ctx.heading('Resources and policies');
  const ctl = new AbortController();
  const tryBox = h('section', { id: 'policy-test', 'data-testid': 'policy-test', 'aria-labelledby': 'h-try' }, h('h2', { id: 'h-try', text: 'Try a statement' }));
  const resSec = h('section', { id: 'resources', 'data-testid': 'resources', 'aria-labelledby': 'h-resources' }, h('h2', { id: 'h-resources', text: 'Resources' }), h('p', { class: 'muted', text: 'Loading…' }));
  const polSec = h('section', { id: 'policies', 'data-testid': 'policies', 'aria-labelledby': 'h-policies' }, h('h2', { id: 'h-policies', text: 'Policies' }), h('p', { class: 'muted', text: 'Loading…' }));
  const histSec = h('section', { id: 'changes', 'data-testid': 'changes', 'aria-labelledby': 'h-changes' }, h('h2', { id: 'h-changes', text: 'History of changes' }), h('p', { class: 'muted', text: 'Loading…' }));
  main.append(h('nav', { 'aria-label': 'Sections of this page' }, h('ul', { class: 'legend' },
    [['#policy-test', 'Try a statement'], ['#resources', 'Resources'], ['#policies', 'Policies'], ['#changes', 'History of changes']].map(([href, text]) => h('li', null, h('a', { href, text }))))),
  tryBox, resSec, polSec, histSec);

  let resources = [];
  const tester = policyTester(tryBox, () => resources);
  load('/api/v1/resources', resSec, 'h-resources', 'Resources', doc => {
    resources = doc?.resources || [];
    tester.setResources(resources);
    return resources.map(resourceCard);
  });
  load('/api/v1/policies', polSec, 'h-policies', 'Policies', doc => (doc?.policies || []).map(policyCard));
  history(histSec, ctl.signal);
  return () => ctl.abort();

  async function load(path, sec, hid, title, build) {
    let text;
    try {
      text = await api(path, { text: true, signal: ctl.signal });
    } catch (err) {
      if (err.name === 'AbortError') return;
      clear(sec).append(h('h2', { id: hid, text: title }), errorBox(err));
      if (path.endsWith('resources')) tester.setResources([]);
      return;
    }
    clear(sec).append(h('h2', { id: hid, text: title }));
    try {
      const cards = build(parseYAML(text));
      sec.append(cards.length ? h('ul', { class: 'cards' }, cards.map(c => h('li', null, c))) : h('p', { class: 'muted', text: 'None.' }));
    } catch (err) {
      sec.append(h('p', { class: 'warn-box', text: 'Shown as the API wrote it (' + err.message + ').' }));
    }
    sec.append(h('details', null, h('summary', { text: `${title} as YAML` }), h('pre', { class: 'scroll', tabindex: '0', 'aria-label': `${title} as YAML`, 'data-testid': `${hid.slice(2)}-yaml`, text })));
  }
}

function resourceCard(r) {
  const dl = h('dl', { class: 'meta' });
  const add = (k, v) => { if (v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && !v.length)) dl.append(h('dt', { text: k }), h('dd', null, v)); };
  add('Type', r.type);
  add('Labels', r.labels && Object.keys(r.labels).length ? Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(', ') : '');
  add('Audit', r.audit);
  add('Requires TLS', r.require_tls ? 'yes' : 'no');
  const kind = r[r.type] || r.postgres || r.ssh || r.http || r.kubernetes;
  if (kind && typeof kind === 'object') {
    for (const [k, v] of Object.entries(kind)) add(k.replaceAll('_', ' '), value(v));
  }
  return h('article', { class: 'card', id: 'resource-' + r.name, 'data-testid': 'resource' }, h('h3', { text: r.name }), dl);
}

function value(v) {
  if (v === null || v === undefined || v === '') return '';
  if (Array.isArray(v)) return v.length ? v.map(x => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(', ') : '';
  if (typeof v === 'object') {
    const dl = h('dl', { class: 'meta' });
    for (const [k, x] of Object.entries(v)) {
      const val = value(x);
      if (val !== '') dl.append(h('dt', { text: k.replaceAll('_', ' ') }), h('dd', null, val));
    }
    return dl.childElementCount ? dl : '';
  }
  return String(v);
}

function policyCard(p) {
  const rules = p.rules || [];
  return h('article', { class: 'card', id: 'policy-' + p.name, 'data-testid': 'policy' },
    h('h3', null, p.name, ' ', p.shadow ? badge('shadow: tried, not enforced', 'held') : null),
    h('p', null, 'Resources: ', (p.resources || []).join(', ') || '—'),
    rules.length ? table(`Rules of ${p.name}, in order`, [
      { label: 'Rule', cell: r => r.name, rowHeader: true },
      { label: 'Effect', cell: r => badge(r.effect, r.effect) },
      { label: 'When', class: 'mono', cell: r => r.when || '' },
      { label: 'Reason', cell: r => r.reason || '' },
      { label: 'Details', cell: r => value(Object.fromEntries(Object.entries(r).filter(([k]) => !['name', 'effect', 'when', 'reason'].includes(k)))) },
    ], rules) : h('p', { class: 'muted', text: 'No rules.' }));
}

// policyTester is the "try it" box: POST /api/v1/policy/test with a statement (PostgreSQL)
// or a command (SSH), as the person signed in or as someone else.
function policyTester(sec, getResources) {
  const select = h('select', { id: 'policy-test-resource', name: 'resource', required: true, 'data-testid': 'policy-test-resource' }, h('option', { value: '', text: 'Loading…' }));
  const stmt = h('textarea', { id: 'policy-test-statement', name: 'statement', rows: 4, required: true, 'data-testid': 'policy-test-statement', placeholder: 'select * from customers' });
  const stmtLabel = h('label', { for: 'policy-test-statement', text: 'Statement' });
  const login = h('input', { type: 'text', id: 'policy-test-login', name: 'login', 'data-testid': 'policy-test-login' });
  const loginField = field('Login (SSH; default: the resource’s first)', login);
  loginField.hidden = true;
  const asSub = h('input', { type: 'text', id: 'policy-test-subject', name: 'subject', 'data-testid': 'policy-test-subject' });
  const asGroups = h('input', { type: 'text', id: 'policy-test-groups', name: 'groups', 'data-testid': 'policy-test-groups' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'policy-test-submit', 'data-testid': 'policy-test-submit', text: 'Test' });
  const result = h('div', { id: 'policy-test-result', 'data-testid': 'policy-test-result', 'aria-live': 'polite' });
  const form = h('form', { id: 'policy-test-form', 'data-testid': 'policy-test-form', 'aria-labelledby': 'h-try' },
    h('p', { class: 'muted', text: 'What the policies in force would decide now, for you or for someone else. Nothing runs, and nothing is recorded.' }),
    h('div', { class: 'form-grid' }, field('Resource', select), loginField),
    h('div', { class: 'field' }, stmtLabel, stmt),
    h('details', null, h('summary', { text: 'Test as someone else' }),
      h('div', { class: 'form-grid' }, field('Subject', asSub, 'empty: you'), field('Groups', asGroups, 'comma-separated'))),
    h('div', { class: 'actions' }, submit), result);
  sec.append(form);

  let resourceEl = select;
  const resourceValue = () => resourceEl.value.trim();
  const typeOf = name => getResources().find(r => r.name === name)?.type;
  select.addEventListener('change', () => {
    const ssh = typeOf(select.value) === 'ssh';
    stmtLabel.textContent = ssh ? 'Command' : 'Statement';
    stmt.placeholder = ssh ? 'uptime' : 'select * from customers';
    loginField.hidden = !ssh;
  });

  form.addEventListener('submit', async e => {
    e.preventDefault();
    clear(result);
    const type = typeOf(resourceValue());
    const body = { resource: resourceValue() };
    if (type === 'ssh') {
      body.command = stmt.value;
      if (login.value.trim()) body.login = login.value.trim();
    } else {
      body.statement = stmt.value;
    }
    if (asSub.value.trim()) {
      body.identity = { subject: asSub.value.trim(), groups: asGroups.value.split(',').map(g => g.trim()).filter(Boolean) };
    }
    submit.disabled = true;
    try {
      const r = await api('/api/v1/policy/test', { method: 'POST', body });
      result.append(decisionView(r));
    } catch (err) {
      result.append(errorBox(err, 'policy-test-error'));
    } finally {
      submit.disabled = false;
    }
  });

  return {
    setResources(rs) {
      clear(select);
      const testable = rs.filter(r => r.type === 'postgres' || r.type === 'ssh');
      if (!rs.length) {
        // The resources could not be read: the name is typed instead.
        const input = h('input', { type: 'text', id: 'policy-test-resource', name: 'resource', required: true, 'data-testid': 'policy-test-resource' });
        resourceEl.replaceWith(input);
        resourceEl = input;
        return;
      }
      select.append(h('option', { value: '', text: 'Choose a resource' }), ...testable.map(r => h('option', { value: r.name, text: `${r.name} (${r.type})` })));
      if (testable.length === 1) select.value = testable[0].name;
      select.dispatchEvent(new Event('change'));
    },
  };
}

function decisionView(r) {
  const dl = h('dl', { class: 'meta' });
  const add = (k, v) => { if (v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && !v.length)) dl.append(h('dt', { text: k }), h('dd', null, v)); };
  add('Effect', h('span', { 'data-testid': 'policy-test-effect' }, badge(r.effect, r.effect)));
  add('Rule', h('span', { 'data-testid': 'policy-test-rule', text: r.rule ? [r.policy, r.rule].filter(Boolean).join(' / ') : 'none: the default deny' }));
  add('Reason', h('span', { 'data-testid': 'policy-test-reason', text: r.reason || '' }));
  add('Kinds', (r.kinds || []).join(', '));
  add('Tables', (r.tables || []).join(', '));
  if (r.mask) {
    add('Masked columns', (r.mask.columns || []).map(c => `${c.column}: ${c.method}${c.rule ? ' (' + c.rule + ')' : ''}`).join('; '));
    add('Detectors', (r.mask.detectors || []).map(d => `${d.name}: ${d.method}`).join('; '));
  }
  if (r.approval) {
    const a = r.approval;
    const timeout = typeof a.timeout === 'number' ? duration(a.timeout / 1e9) : a.timeout;
    add('Approval', `${Math.max(a.required || 1, 1)} of ${(a.approvers || []).join(', ')}, within ${timeout}, ${a.mode === 'fail_fast' ? 'fail fast' : 'the client waits'}`);
  }
  add('Grants used', (r.grants || []).join(', '));
  if (r.shadow) add('Shadow policies', `${r.shadow.effect} (${[r.shadow.policy, r.shadow.rule].filter(Boolean).join(' / ')})`);
  add('Decided for', r.identity ? `${r.identity.name || r.identity.subject}${r.identity.groups?.length ? ' (groups: ' + r.identity.groups.join(', ') + ')' : ''}` : '');
  add('Policy revision', r.revision ? String(r.revision) : '');
  add('Catalog', r.catalog_version || '');
  const cls = r.effect === 'deny' ? 'error' : r.effect === 'require_approval' ? 'warn-box' : 'ok-box';
  return h('div', { class: cls, role: 'status' }, h('strong', { text: 'Decision: ' + r.effect }), dl);
}

// history lists the policy and resource changes of the period, newest first, with their
// diffs (the evidence report "changes").
async function history(sec, signal) {
  const days = 90;
  const until = new Date();
  const since = new Date(until.getTime() - days * 86400e3);
  const params = { since: since.toISOString().replace(/\.\d+Z$/, 'Z'), until: until.toISOString().replace(/\.\d+Z$/, 'Z') };
  let res;
  try {
    res = await api('/api/v1/evidence/changes' + query({ ...params, format: 'json' }), { signal });
  } catch (err) {
    if (err.name === 'AbortError') return;
    clear(sec).append(h('h2', { id: 'h-changes', text: 'History of changes' }), errorBox(err, 'changes-error'));
    return;
  }
  const rows = [...(res.rows || [])].reverse();
  clear(sec).append(h('h2', { id: 'h-changes', text: 'History of changes' }),
    h('p', { class: 'muted' }, `The last ${days} days, newest first: ${rows.length} change${rows.length === 1 ? '' : 's'}. `,
      h('a', { href: '/api/v1/evidence/changes' + query({ ...params, format: 'csv' }), download: 'changes.csv', 'data-testid': 'download-changes-csv', text: 'Download CSV' })));
  const ol = h('ol', { class: 'cards', id: 'changes-list', 'data-testid': 'changes-list' });
  for (const c of rows.slice(0, 200)) {
    const when = /^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)/.exec(c.time || '');
    ol.append(h('li', { class: 'card', 'data-testid': 'change' },
      h('h3', null, `${c.kind} ${c.name} ${c.action}`),
      h('p', null, when ? time(`${when[1]}T${when[2]}Z`) : c.time, ' by ', h('strong', { text: c.by || c.by_subject || 'unknown' }),
        c.by_subject && c.by_subject !== c.by ? h('span', { class: 'muted', text: ` (${c.by_subject})` }) : null, c.source ? ` via ${c.source}` : ''),
      c.diff ? diffBlock(c.diff, { 'data-testid': 'change-diff', 'aria-label': `Diff of ${c.kind} ${c.name}` }) : null));
  }
  sec.append(rows.length ? ol : h('p', { class: 'muted', text: 'No changes in this period.' }));
}

// Sessions (/sessions): search the audit trail's sessions. The search is the page's URL
// query (so that a search can be shared), and paging follows the API's next_before cursor.
import { h, clear, time, duration, errorBox, table, badge, field, datetimeLocal, fromLocal, toDate, who } from './dom.js';
import { api, query } from './api.js';

// The search fields as the API names them (label and text too); since and until are RFC
// 3339 in the URL and local time in the form.
const FIELDS = ['identity', 'group', 'resource', 'label', 'since', 'until', 'effect', 'protocol', 'text'];
const EFFECTS = [['', 'Any outcome'], ['allowed', 'Allowed'], ['denied', 'Denied'], ['held', 'Held for approval'], ['masked', 'Masked'], ['approved', 'Approved']];
const PROTOCOLS = [['', 'Any protocol'], ['postgres', 'PostgreSQL'], ['ssh', 'SSH'], ['http', 'HTTP'], ['kubernetes', 'Kubernetes']];
const PAGE = 50;

// Cursors of the pages before this one, so that "Newer" goes back (kept while the search
// stays the same).
let history_ = { key: '', stack: [] };

export function render(main, ctx) {
  ctx.heading('Sessions');
  const q = ctx.query;
  const inputs = {};
  const text = (name, label, hint, attrs = {}) => {
    inputs[name] = h('input', { type: 'text', id: 'search-' + name, name, value: q.get(name) || '', 'data-testid': 'search-' + name, ...attrs });
    return field(label, inputs[name], hint);
  };
  const select = (name, label, options) => {
    inputs[name] = h('select', { id: 'search-' + name, name, 'data-testid': 'search-' + name },
      options.map(([v, t]) => h('option', { value: v, text: t, selected: (q.get(name) || '') === v })));
    return field(label, inputs[name]);
  };
  const when = (name, label) => {
    const d = toDate(q.get(name) || '');
    inputs[name] = h('input', { type: 'datetime-local', id: 'search-' + name, name, value: d ? datetimeLocal(d) : '', 'data-testid': 'search-' + name });
    return field(label, inputs[name]);
  };
  const form = h('form', { id: 'session-search', 'data-testid': 'session-search', role: 'search', 'aria-label': 'Search sessions' },
    h('div', { class: 'form-grid' },
      text('identity', 'Identity', 'subject or name'),
      text('group', 'Group'),
      text('resource', 'Resource'),
      text('label', 'Resource label', 'key=value', { placeholder: 'env=production' }),
      when('since', 'Started at or after'),
      when('until', 'Started at or before'),
      select('effect', 'Outcome', EFFECTS),
      select('protocol', 'Protocol', PROTOCOLS),
      h('div', { class: 'wide' }, text('text', 'Text', 'in SQL, SSH commands and paths, HTTP paths, queries and bodies'))),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary', id: 'search-submit', 'data-testid': 'search-submit', text: 'Search' }),
      h('button', { type: 'button', id: 'search-clear', 'data-testid': 'search-clear', text: 'Clear', onclick: () => ctx.navigate('/sessions') })));
  form.addEventListener('submit', e => {
    e.preventDefault();
    const p = {};
    for (const name of FIELDS) {
      const v = inputs[name].value.trim();
      p[name] = name === 'since' || name === 'until' ? fromLocal(v) : v;
    }
    ctx.navigate('/sessions' + query(p));
  });

  const results = h('section', { id: 'session-results', 'data-testid': 'session-results', 'aria-labelledby': 'h-results', 'aria-busy': 'true' },
    h('h2', { id: 'h-results', text: 'Results' }), h('p', { class: 'muted', text: 'Loading…' }));
  main.append(form, results);

  const params = {};
  for (const name of FIELDS) params[name] = q.get(name) || '';
  const key = query(params);
  if (history_.key !== key) history_ = { key, stack: [] };
  const before = q.get('before') || '';
  const ctl = new AbortController();
  load();
  return () => ctl.abort();

  async function load() {
    let res;
    try {
      res = await api('/api/v1/sessions' + query({ ...params, before, limit: PAGE }), { signal: ctl.signal });
    } catch (err) {
      if (err.name === 'AbortError') return;
      clear(results).append(h('h2', { id: 'h-results', text: 'Results' }), errorBox(err, 'sessions-error'));
      results.setAttribute('aria-busy', 'false');
      return;
    }
    const sessions = res.sessions || [];
    clear(results).append(h('h2', { id: 'h-results', text: 'Results' }));
    results.setAttribute('aria-busy', 'false');
    const pageNote = before ? 'Sessions started before ' + new Date(Number(before) / 1000).toLocaleString() : 'Newest first';
    results.append(h('p', { class: 'muted', id: 'session-count', 'data-testid': 'session-count', role: 'status' },
      sessions.length === 0 ? 'No sessions match.' : `${sessions.length} session${sessions.length === 1 ? '' : 's'}. ${pageNote}.`));
    if (sessions.length) {
      results.append(table('Sessions', [
        { label: 'Started', cell: s => h('a', { href: '/sessions/' + encodeURIComponent(s.id), 'data-testid': 'session-link' }, time(s.start)), rowHeader: true },
        { label: 'Identity', cell: s => who({ subject: s.identity, name: s.name }) },
        { label: 'Resource', cell: s => s.resource },
        { label: 'Protocol', cell: s => s.protocol + (s.login ? ` (as ${s.login})` : '') },
        { label: 'Duration', cell: s => s.end ? duration((new Date(s.end) - new Date(s.start)) / 1000) : badge('open', 'pending') },
        { label: 'Statements', class: 'num', cell: s => String(s.statements) },
        { label: 'Denied', class: 'num', cell: s => s.denied ? badge(String(s.denied), 'deny') : '0' },
        { label: 'Held', class: 'num', cell: s => s.held ? badge(String(s.held), 'held') : '0' },
        { label: 'Approved', class: 'num', cell: s => String(s.approved) },
        { label: 'Masked', class: 'num', cell: s => s.masked ? badge(String(s.masked), 'mask') : '0' },
        { label: 'Events', class: 'num', cell: s => String(s.events) },
      ], sessions, { id: 'sessions-table', 'data-testid': 'sessions-table' }));
    }
    const nav = h('nav', { class: 'pager', 'aria-label': 'Result pages' });
    if (before) {
      const prev = history_.stack[history_.stack.length - 1];
      const newer = h('a', { class: 'button', id: 'page-newer', 'data-testid': 'page-newer', href: '/sessions' + query({ ...params, before: prev || '' }), text: prev === undefined ? 'Newest' : 'Newer' });
      newer.addEventListener('click', () => { history_.stack.pop(); });
      nav.append(newer);
    }
    if (res.next_before) {
      const older = h('a', { class: 'button', id: 'page-older', 'data-testid': 'page-older', href: '/sessions' + query({ ...params, before: res.next_before }), text: 'Older' });
      older.addEventListener('click', () => { history_.stack.push(before); });
      nav.append(older);
    }
    if (nav.childElementCount) results.append(nav);
  }
}

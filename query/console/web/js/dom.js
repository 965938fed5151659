// DOM helpers. Everything the API returns goes into the page as text (textContent,
// attributes set one by one): nothing is parsed as HTML, and no style attribute is written
// (the Content-Security-Policy allows no inline style).

// h builds an element: h('a', {href: '/x', class: 'link', onclick: f}, 'text', child, ...).
// Attributes: class, text, dataset-style data-*, aria-*, on* listeners; other keys are set
// as properties when the element has one (value, checked, disabled, hidden), else as
// attributes. Children: nodes, strings (as text), arrays, null/undefined/false (skipped).
export function h(tag, attrs, ...children) {
  const el = tag.includes(':') ? document.createElementNS(NS[tag.split(':')[0]], tag.split(':')[1]) : document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const NS = { svg: 'http://www.w3.org/2000/svg' };

// s builds an SVG element: s('rect', {x: 0, ...}).
export function s(tag, attrs, ...children) {
  return h('svg:' + tag, attrs, ...children);
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'style') throw new Error('no style attributes: the CSP refuses them');
    if (k === 'text') {
      el.textContent = String(v);
    } else if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    } else if (!(el instanceof SVGElement) && k in el && !k.includes('-') && k !== 'list' && k !== 'form') {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// clear removes an element's children.
export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// announce says something to screen readers (the page's polite live region).
export function announce(msg) {
  const live = document.getElementById('announcer');
  if (!live) return;
  const p = h('p', { text: msg });
  live.append(p);
  while (live.childElementCount > 5) live.firstElementChild.remove();
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const shortFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });

export function toDate(v) {
  if (v instanceof Date) return v;
  if (!v || v.startsWith?.('0001-01-01')) return null;
  const d = new Date(v);
  return isNaN(d) ? null : d;
}

// utc is a time in UTC, RFC 3339 without fractions.
export function utc(d) {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// time is a <time> in the browser's local time, with the UTC time in its title.
export function time(v, opts = {}) {
  const d = toDate(v);
  if (!d) return h('span', { class: 'muted', text: opts.none ?? '—' });
  return h('time', { datetime: d.toISOString(), title: 'UTC ' + utc(d).replace('T', ' ').replace('Z', '') },
    opts.short ? shortFmt.format(d) : dateFmt.format(d));
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

// relative is "in 5 minutes", "3 hours ago".
export function relative(v, now = Date.now()) {
  const d = toDate(v);
  if (!d) return '';
  const sec = Math.round((d.getTime() - now) / 1000);
  const abs = Math.abs(sec);
  if (abs < 60) return rtf.format(sec, 'second');
  if (abs < 3600) return rtf.format(Math.round(sec / 60), 'minute');
  if (abs < 86400 * 2) return rtf.format(Math.round(sec / 3600), 'hour');
  return rtf.format(Math.round(sec / 86400), 'day');
}

// duration formats microseconds or seconds as "1 h 2 min", "3.4 s".
export function duration(seconds) {
  if (seconds === undefined || seconds === null || isNaN(seconds)) return '—';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  const sec = Math.round(seconds % 60);
  if (m < 60) return sec ? `${m} min ${sec} s` : `${m} min`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return m % 60 ? `${hr} h ${m % 60} min` : `${hr} h`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

// errorBox shows an error (the API's message) in an alert.
export function errorBox(err, testid = 'error') {
  return h('div', { class: 'error', role: 'alert', 'data-testid': testid }, errorText(err));
}

export function errorText(err) {
  if (!err) return '';
  if (err.status) return `${err.message} (HTTP ${err.status})`;
  return err.message || String(err);
}

// table builds a table: columns [{label, cell(row) -> node|string, class}], rows.
export function table(caption, columns, rows, attrs = {}) {
  const t = h('table', attrs,
    caption ? h('caption', { text: caption }) : null,
    h('thead', null, h('tr', null, columns.map(c => h('th', { scope: 'col', class: c.class }, c.label)))),
    h('tbody', null, rows.map(r => h('tr', null, columns.map((c, i) => {
      const v = c.cell(r);
      return i === 0 && c.rowHeader ? h('th', { scope: 'row', class: c.class }, v) : h('td', { class: c.class }, v);
    })))));
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption || attrs['aria-label'] || 'table' }, t);
}

// field is a labelled input: field('Identity', h('input', {...})).
export function field(label, control, hint) {
  const id = control.id || (control.id = 'f-' + Math.random().toString(36).slice(2, 9));
  let hintEl = null;
  if (hint) {
    hintEl = h('span', { class: 'hint', id: id + '-hint', text: hint });
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: 'field' }, h('label', { for: id, text: label }), control, hintEl);
}

// badge is a small labelled value (an effect, a status).
export function badge(text, kind) {
  return h('span', { class: ['badge', kind ? 'badge-' + kind.replace(/[^a-z_]/g, '') : ''], text });
}

export function who(identity) {
  if (!identity) return '—';
  const name = identity.name || identity.subject || '';
  if (identity.subject && identity.name && identity.subject !== identity.name) {
    return h('span', { title: 'subject ' + identity.subject, text: name });
  }
  return name;
}

// datetimeLocal is a Date as the value of an <input type=datetime-local> (local time).
export function datetimeLocal(d) {
  const p = n => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

// fromLocal reads an <input type=datetime-local> value as a UTC RFC 3339 time ('' if empty).
export function fromLocal(v) {
  if (!v) return '';
  const d = new Date(v);
  return isNaN(d) ? '' : utc(d);
}

// diffBlock shows a unified diff with added and removed lines marked (by colour and by
// their + and - signs, kept).
export function diffBlock(text, attrs = {}) {
  const pre = h('pre', { class: 'diff', tabindex: '0', ...attrs });
  for (const line of String(text ?? '').split('\n')) {
    let cls = '';
    if (line.startsWith('+++') || line.startsWith('---')) cls = 'hunk';
    else if (line.startsWith('+')) cls = 'add';
    else if (line.startsWith('-')) cls = 'del';
    else if (line.startsWith('@@')) cls = 'hunk';
    pre.append(h('span', { class: cls, text: line || ' ' }));
  }
  return pre;
}

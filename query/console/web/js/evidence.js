// Evidence (/evidence): the compliance reports of a period (default: the last 30 days) as
// tables with CSV and JSON downloads (plain links to the API: the cookie authenticates a
// GET), and charts of activity and approvals.
import { h, clear, errorBox, table, field, utc, toDate, time, duration, diffBlock } from './dom.js';
import { api, query } from './api.js';
import { stackedBars, hBars, legend } from './charts.js';

// The reports query/evidence.go serves, in the order shown.
const REPORTS = [
  { kind: 'access', title: 'Access', desc: 'Who used which resource: sessions and statements per identity and resource, with their outcomes.' },
  { kind: 'privileged', title: 'Privileged activity', desc: 'Statements and commands that change things or reach privileged kinds, on resources with the label.' },
  { kind: 'denials', title: 'Denials', desc: 'Every statement or request refused, and every held one not run, with the rule and reason.' },
  { kind: 'grants', title: 'Grants', desc: 'Time-boxed grants: created, expired and revoked.' },
  { kind: 'changes', title: 'Policy and resource changes', desc: 'Who changed which policy or resource, when, and the diff.' },
];
const SHOWN = 100; // rows shown per report (the downloads have all)

function dateInput(d) {
  const p = n => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

// period reads since and until from the URL (RFC 3339), defaulting to the last 30 days
// (until: now, rounded up to the end of today in local time, so that the links are stable).
function period(q) {
  const until = toDate(q.get('until') || '') || endOfToday();
  const since = toDate(q.get('since') || '') || new Date(until.getTime() - 30 * 86400e3);
  return { since, until, label: q.get('label') || '' };
}

function endOfToday() {
  const d = new Date();
  d.setHours(24, 0, 0, 0);
  return d;
}

export function render(main, ctx) {
  ctx.heading('Evidence');
  const p = period(ctx.query);
  const sinceIn = h('input', { type: 'date', id: 'period-since', name: 'since', value: dateInput(p.since), required: true, 'data-testid': 'period-since' });
  const untilIn = h('input', { type: 'date', id: 'period-until', name: 'until', value: dateInput(new Date(p.until.getTime() - 1)), required: true, 'data-testid': 'period-until' });
  const labelIn = h('input', { type: 'text', id: 'period-label', name: 'label', value: p.label, placeholder: 'env=production', 'data-testid': 'period-label' });
  const formErr = h('div', { class: 'error', role: 'alert' });
  const go = (since, until, label) => ctx.navigate('/evidence' + query({ since: utc(since), until: utc(until), label }));
  const quick = days => h('button', { type: 'button', 'data-testid': `period-${days}d`, text: `Last ${days} days`, onclick: () => {
    const until = endOfToday();
    go(new Date(until.getTime() - days * 86400e3), until, labelIn.value.trim());
  } });
  const form = h('form', { id: 'period-form', 'data-testid': 'period-form', 'aria-label': 'Period' },
    h('div', { class: 'form-grid' },
      field('From (first day, local time)', sinceIn),
      field('To (last day, included)', untilIn),
      field('Privileged report: resource label', labelIn, 'key=value; default env=production')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'period-submit', 'data-testid': 'period-submit', text: 'Show' }), quick(7), quick(30), quick(90)),
    formErr);
  form.addEventListener('submit', e => {
    e.preventDefault();
    const since = new Date(sinceIn.value + 'T00:00');
    const until = new Date(untilIn.value + 'T00:00');
    until.setDate(until.getDate() + 1);
    if (isNaN(since) || isNaN(until) || since >= until) {
      formErr.textContent = 'The period’s first day must be on or before its last day.';
      return;
    }
    go(since, until, labelIn.value.trim());
  });
  const summary = h('p', { class: 'muted', id: 'period-summary', 'data-testid': 'period-summary' },
    'Events from ', time(p.since), ' up to ', time(p.until), ' (', duration((p.until - p.since) / 1000), ').');
  main.append(form, summary);

  const ctl = new AbortController();
  const range = { since: utc(p.since), until: utc(p.until) };
  const nav = h('nav', { 'aria-label': 'Reports on this page' }, h('ul', { class: 'legend' },
    h('li', null, h('a', { href: '#charts', text: 'Charts' })),
    REPORTS.map(r => h('li', null, h('a', { href: '#report-' + r.kind, text: r.title })))));
  main.append(nav);
  const charts = h('section', { id: 'charts', 'data-testid': 'charts', 'aria-labelledby': 'h-charts' }, h('h2', { id: 'h-charts', text: 'Charts' }), h('p', { class: 'muted', text: 'Loading…' }));
  main.append(charts);
  loadCharts(charts, range, ctl.signal);
  for (const r of REPORTS) {
    const params = { ...range, ...(r.kind === 'privileged' && p.label ? { label: p.label } : {}) };
    const sec = h('section', { id: 'report-' + r.kind, 'data-testid': 'report-' + r.kind, 'aria-labelledby': 'h-report-' + r.kind },
      h('h2', { id: 'h-report-' + r.kind, text: r.title }),
      h('p', { text: r.desc }),
      h('p', { class: 'actions' },
        h('a', { class: 'button', href: `/api/v1/evidence/${r.kind}` + query({ ...params, format: 'csv' }), download: `evidence-${r.kind}.csv`, id: `download-${r.kind}-csv`, 'data-testid': `download-${r.kind}-csv` }, 'Download CSV', h('span', { class: 'visually-hidden', text: ' of ' + r.title })),
        h('a', { class: 'button', href: `/api/v1/evidence/${r.kind}` + query({ ...params, format: 'json' }), download: `evidence-${r.kind}.json`, id: `download-${r.kind}-json`, 'data-testid': `download-${r.kind}-json` }, 'Download JSON', h('span', { class: 'visually-hidden', text: ' of ' + r.title }))),
      h('div', { class: 'report-body', 'aria-busy': 'true' }, h('p', { class: 'muted', text: 'Loading…' })));
    main.append(sec);
    loadReport(sec.querySelector('.report-body'), r, params, ctl.signal);
  }
  return () => ctl.abort();
}

async function loadReport(body, r, params, signal) {
  let res;
  try {
    res = await api(`/api/v1/evidence/${r.kind}` + query({ ...params, format: 'json' }), { signal });
  } catch (err) {
    if (err.name === 'AbortError') return;
    clear(body).append(errorBox(err, 'report-error'));
    body.setAttribute('aria-busy', 'false');
    return;
  }
  clear(body);
  body.setAttribute('aria-busy', 'false');
  const rows = res.rows || [];
  const cols = res.columns || (rows[0] ? Object.keys(rows[0]) : []);
  const lf = res.filters?.label;
  if (lf) {
    body.append(h('p', { class: lf.resources?.length ? 'notice' : 'warn-box' },
      `Label ${lf.label}${lf.default ? ' (the default)' : ''}: `,
      lf.resources?.length ? `carried by ${lf.resources.join(', ')}.` : 'no resource with a session in this period carries it.',
      ` Labels in use: ${lf.labels_in_use?.length ? lf.labels_in_use.join(', ') : 'none'}.`));
  }
  body.append(h('p', { class: 'muted', 'data-testid': 'report-count' },
    rows.length === 0 ? 'No rows in this period.' : `${rows.length.toLocaleString()} row${rows.length === 1 ? '' : 's'}${rows.length > SHOWN ? `; the first ${SHOWN} shown (the downloads have all)` : ''}.`));
  if (!rows.length) return;
  body.append(table(r.title + ' report', cols.map(c => ({
    label: c.replaceAll('_', ' '),
    class: /^(sessions|statements|allowed|masked|denied|held|approved|rows|count)$/.test(c) || /_(count|seconds)$/.test(c) ? 'num' : (c === 'fingerprint' || c === 'statement' || c === 'session' ? 'mono' : ''),
    cell: row => cell(c, row[c]),
  })), rows.slice(0, SHOWN), { id: 'report-table-' + r.kind, 'data-testid': 'report-table-' + r.kind }));
}

function cell(col, v) {
  if (v === undefined || v === null || v === '') return '';
  if (col === 'diff') return h('details', null, h('summary', { text: 'Diff' }), diffBlock(v));
  // Times come as RFC 3339 or as ClickHouse writes them (UTC, a space before the time).
  const t = /^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d(:\d\d(\.\d+)?)?)(Z|[+-]\d\d:?\d\d)?$/.exec(v);
  if (t) return time(`${t[1]}T${t[2]}${t[5] || 'Z'}`, { short: true });
  if (col === 'session' && /^[0-9a-f-]{36}$/.test(v)) return h('a', { href: '/sessions/' + encodeURIComponent(v), text: v.slice(0, 8) + '…', title: v, 'aria-label': 'session ' + v });
  return String(v);
}

async function loadCharts(sec, range, signal) {
  const hours = (new Date(range.until) - new Date(range.since)) / 3600e3;
  let res;
  try {
    res = await api('/api/v1/evidence/charts' + query({ ...range, bucket: hours <= 72 ? 'hour' : 'day' }), { signal });
  } catch (err) {
    if (err.name === 'AbortError') return;
    clear(sec).append(h('h2', { id: 'h-charts', text: 'Charts' }), errorBox(err, 'charts-error'));
    return;
  }
  clear(sec).append(h('h2', { id: 'h-charts', text: 'Charts' }));
  activityCharts(sec, res);
  approvalChart(sec, res.approvals || []);
}

// bucketStarts are the UTC hours or days from since to until (the API leaves out buckets
// without activity; the chart shows them as empty).
function bucketStarts(since, until, bucket) {
  const step = bucket === 'hour' ? 3600e3 : 86400e3;
  const out = [];
  let t = Math.floor(new Date(since).getTime() / step) * step;
  for (const end = new Date(until).getTime(); t < end && out.length < 1000; t += step) out.push(t);
  return out;
}

function activityCharts(sec, res) {
  const activity = res.activity || [];
  const bucket = res.bucket === 'hour' ? 'hour' : 'day';
  const resources = [...new Set(activity.map(a => a.resource))].sort();
  const starts = bucketStarts(res.since, res.until, bucket);
  // Days are UTC days (as the API counts them); hours are shown in local time.
  const fmt = new Intl.DateTimeFormat(undefined, bucket === 'hour' ? { month: 'short', day: 'numeric', hour: '2-digit' } : { month: 'short', day: 'numeric', timeZone: 'UTC' });
  const buckets = key => starts.map(t => {
    const values = {};
    for (const a of activity) if (new Date(a.time).getTime() === t) values[a.resource] = (values[a.resource] || 0) + (Number(a[key]) || 0);
    return { label: fmt.format(new Date(t)), values };
  });
  const per = bucket === 'hour' ? 'per hour' : 'per day (UTC)';
  sec.append(h('h3', { id: 'h-chart-statements', text: `Statements and requests ${per}, by resource` }));
  if (!activity.length) {
    sec.append(h('p', { class: 'muted', text: 'No activity in this period.' }));
    return;
  }
  const total = k => activity.reduce((n, a) => n + (Number(a[k]) || 0), 0);
  sec.append(stackedBars({ id: 'chart-statements', title: `Statements and requests ${per}, by resource`, yLabel: 'statements',
    desc: `${total('statements')} statements and requests on ${resources.length} resources; the table below lists them.`, buckets: buckets('statements'), series: resources }));
  sec.append(legend(resources));
  sec.append(h('h3', { id: 'h-chart-denied', text: `Denials ${per}, by resource` }));
  sec.append(stackedBars({ id: 'chart-denied', title: `Denials ${per}, by resource`, yLabel: 'denied',
    desc: `${total('denied')} denied in the period; the table below lists them.`, buckets: buckets('denied'), series: resources }));
  sec.append(legend(resources));
  sec.append(h('details', null, h('summary', { text: 'Activity as a table' }),
    table('Statements and denials by time and resource', [
      { label: bucket === 'hour' ? 'Hour' : 'Day (UTC)', cell: a => (bucket === 'hour' ? time(a.time, { short: true }) : h('time', { datetime: a.time, text: fmt.format(new Date(a.time)) })), rowHeader: true },
      { label: 'Resource', cell: a => a.resource },
      { label: 'Statements', class: 'num', cell: a => String(a.statements) },
      { label: 'Denied', class: 'num', cell: a => String(a.denied) },
    ], activity, { id: 'chart-activity-table', 'data-testid': 'chart-activity-table' })));
}

function approvalChart(sec, approvals) {
  sec.append(h('h3', { id: 'h-chart-approvals', text: 'Approvals by approver, with the median time to decide' }));
  if (!approvals.length) {
    sec.append(h('p', { class: 'muted', text: 'No approval decisions in this period.' }));
    return;
  }
  const rows = [...approvals].sort((a, b) => b.decided - a.decided);
  sec.append(hBars({ id: 'chart-approvals', title: 'Approvals decided per approver',
    desc: `${rows.length} approvers; approved and denied per approver, the median time to decide at each bar's end; the table below lists them.`,
    rows: rows.map(a => ({
      label: a.approver,
      parts: [{ name: 'approved', value: Number(a.approved) || 0, cls: 'cok' }, { name: 'denied', value: Number(a.denied) || 0, cls: 'cbad' }],
      note: `${a.decided} decided, median ${duration(a.median_seconds)}`,
    })) }));
  sec.append(legend(['approved', 'denied'], n => (n === 'approved' ? 'cok' : 'cbad')));
  sec.append(table('Approvals by approver', [
    { label: 'Approver', cell: a => a.approver, rowHeader: true },
    { label: 'Decided', class: 'num', cell: a => String(a.decided) },
    { label: 'Approved', class: 'num', cell: a => String(a.approved) },
    { label: 'Denied', class: 'num', cell: a => String(a.denied) },
    { label: 'Median time to decide', class: 'num', cell: a => duration(a.median_seconds) },
    { label: '90th percentile', class: 'num', cell: a => duration(a.p90_seconds) },
  ], rows, { id: 'chart-approvals-table', 'data-testid': 'chart-approvals-table' }));
}

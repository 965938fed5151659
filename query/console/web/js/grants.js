// Grants (/grants): ask for a role on a resource for a while (an approval of kind grant),
// and see the requests pending, the grants in force and those that ended; admins revoke.
import { h, clear, time, relative, errorBox, errorText, table, field, who, badge, announce } from './dom.js';
import { api, hasRole } from './api.js';
import { resourceNames } from './resources.js';

export function render(main, ctx) {
  ctx.heading('Grants');
  const admin = hasRole('admin');
  const ctl = new AbortController();

  const resource = h('input', { type: 'text', id: 'grant-resource', name: 'resource', required: true, list: 'grant-resources', autocomplete: 'off', 'data-testid': 'grant-resource' });
  const role = h('input', { type: 'text', id: 'grant-role', name: 'role', required: true, list: 'grant-roles', autocomplete: 'off', 'data-testid': 'grant-role' });
  const dur = h('input', { type: 'text', id: 'grant-for', name: 'for', required: true, value: '1h', list: 'grant-durations', pattern: '^\\s*(\\d+(\\.\\d+)?(h|m|s))+\\s*$', 'data-testid': 'grant-for' });
  const reason = h('textarea', { id: 'grant-reason', name: 'reason', required: true, rows: 2, maxlength: 1000, 'data-testid': 'grant-reason' });
  const resList = h('datalist', { id: 'grant-resources' });
  const roleList = h('datalist', { id: 'grant-roles' });
  const durList = h('datalist', { id: 'grant-durations' }, ['30m', '1h', '2h', '4h', '8h'].map(v => h('option', { value: v })));
  const msg = h('div', { id: 'grant-message', 'data-testid': 'grant-message', role: 'status' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'grant-submit', 'data-testid': 'grant-submit', text: 'Request the grant' });
  const form = h('form', { id: 'grant-form', 'data-testid': 'grant-form', 'aria-labelledby': 'h-request' },
    h('div', { class: 'form-grid' },
      field('Resource', resource),
      field('Role', role, 'a role the configuration’s grants section offers'),
      field('For', dur, 'a duration: 30m, 2h, 1h30m (at most what the role allows)'),
      h('div', { class: 'wide' }, field('Reason', reason, 'why: an incident or a ticket; approvers read it'))),
    resList, roleList, durList,
    h('div', { class: 'actions' }, submit), msg);
  main.append(h('section', { 'aria-labelledby': 'h-request' }, h('h2', { id: 'h-request', text: 'Request a grant' }), form));

  const pending = h('div', { id: 'grants-pending', 'data-testid': 'grants-pending' }, h('p', { class: 'muted', text: 'Loading…' }));
  const active = h('div', { id: 'grants-active', 'data-testid': 'grants-active' }, h('p', { class: 'muted', text: 'Loading…' }));
  const ended = h('div', { id: 'grants-ended', 'data-testid': 'grants-ended' }, h('p', { class: 'muted', text: 'Loading…' }));
  const revokeBox = h('div', { id: 'revoke-box' });
  main.append(
    h('section', { 'aria-labelledby': 'h-pending' }, h('h2', { id: 'h-pending', text: 'Waiting for approval' }), pending),
    h('section', { 'aria-labelledby': 'h-active' }, h('h2', { id: 'h-active', text: 'In force' }), active, revokeBox),
    h('section', { 'aria-labelledby': 'h-ended' }, h('h2', { id: 'h-ended', text: 'Ended or not granted' }), ended));

  form.addEventListener('submit', async e => {
    e.preventDefault();
    clear(msg);
    msg.className = '';
    submit.disabled = true;
    try {
      const a = await api('/api/v1/grants', { method: 'POST', body: { resource: resource.value.trim(), role: role.value.trim(), for: dur.value.trim(), reason: reason.value.trim() } });
      msg.className = 'ok-box';
      msg.textContent = `Requested: approval ${a.id}, for members of ${(a.request?.approvers || []).join(', ')} (${Math.max(a.request?.required || 1, 1)} needed) until ${new Date(a.request?.deadline).toLocaleString()}.`;
      reason.value = '';
      load();
    } catch (err) {
      msg.className = 'error';
      msg.setAttribute('role', 'alert');
      msg.textContent = 'Not requested: ' + errorText(err);
    } finally {
      submit.disabled = false;
    }
  });

  resourceNames(ctl.signal).then(names => names.forEach(n => resList.append(h('option', { value: n })))).catch(() => {});

  async function load() {
    let gs, as;
    try {
      [gs, as] = await Promise.all([api('/api/v1/grants', { signal: ctl.signal }), api('/api/v1/approvals?all=1', { signal: ctl.signal })]);
    } catch (err) {
      if (err.name === 'AbortError') return;
      for (const el of [pending, active, ended]) clear(el).append(errorBox(err));
      return;
    }
    const grants = gs.grants || [];
    const reqs = (as.approvals || []).filter(a => a.request?.kind === 'grant');
    const roles = new Set([...grants.map(g => g.role), ...reqs.map(a => a.request.grant_role)].filter(Boolean));
    try {
      // The roles that can be asked for, from the config.
      for (const r of (await api('/api/v1/grants/roles', { signal: ctl.signal })).roles || []) roles.add(r.role);
    } catch (err) {
      if (err.name === 'AbortError') return;
    }
    clear(roleList).append(...[...roles].sort().map(r => h('option', { value: r })));

    const p = reqs.filter(a => a.status === 'pending');
    clear(pending).append(p.length === 0 ? h('p', { class: 'muted', text: 'No grant requests are waiting.' }) : table('Grant requests waiting for approval', [
      { label: 'Requested', cell: a => time(a.requested_at), rowHeader: true },
      { label: 'Who', cell: a => who(a.requester) },
      { label: 'Role', cell: a => a.request.grant_role },
      { label: 'Resource', cell: a => a.resource },
      { label: 'For', cell: a => hours(a.request.grant_seconds) },
      { label: 'Approvals', cell: a => `${(a.approvals || []).length} of ${Math.max(a.request.required || 1, 1)}` },
      { label: 'Deadline', cell: a => h('span', null, relative(a.request.deadline), ' (', time(a.request.deadline, { short: true }), ')') },
      { label: 'Reason', cell: a => a.request.reason || '' },
      { label: 'Action', cell: () => h('a', { href: '/approvals', text: 'Decide' }) },
    ], p, { id: 'grants-pending-table', 'data-testid': 'grants-pending-table' }));

    clear(active).append(h('p', { class: 'muted', text: gs.scope === 'all' ? 'Every grant in force.' : `Your grants in force (${gs.subject}); admins see everyone’s.` }));
    active.append(grants.length === 0 ? h('p', { class: 'muted', text: 'No grants in force.' }) : table('Grants in force', [
      { label: 'Who', cell: g => g.subject, rowHeader: true },
      { label: 'Role', cell: g => g.role },
      { label: 'Resource', cell: g => g.resource },
      { label: 'Expires', cell: g => h('span', null, relative(g.expires), ' (', time(g.expires, { short: true }), ')') },
      { label: 'Approved by', cell: g => (g.approved_by || []).join(', ') },
      { label: 'Reason', cell: g => g.reason || '' },
      { label: 'At expiry', cell: g => (g.on_expiry === 'next_statement' ? 'rights end at the next statement' : 'its sessions end') },
      ...(admin ? [{ label: 'Revoke', cell: g => h('button', { type: 'button', class: 'danger', id: 'revoke-' + g.id, 'data-testid': 'revoke', 'data-grant-id': g.id, text: 'Revoke', 'aria-label': `Revoke ${g.role} on ${g.resource} for ${g.subject}`, onclick: ev => askRevoke(g, ev.currentTarget) }) }] : []),
    ], grants, { id: 'grants-active-table', 'data-testid': 'grants-active-table' }));

    const now = Date.now();
    const inForce = new Set(grants.map(g => g.id));
    const done = reqs.filter(a => a.status !== 'pending' && !inForce.has(a.id)).map(a => {
      let outcome = a.status;
      let end = a.decided_at;
      if (a.status === 'approved') {
        end = new Date(new Date(a.decided_at).getTime() + (a.request.grant_seconds || 0) * 1000).toISOString();
        outcome = new Date(end).getTime() <= now ? 'expired' : 'revoked';
      }
      return { a, outcome, end };
    }).sort((x, y) => new Date(y.end) - new Date(x.end));
    clear(ended).append(done.length === 0 ? h('p', { class: 'muted', text: 'None to show.' }) : table('Grants that ended, and requests not granted', [
      { label: 'Expiry or decision', cell: d => time(d.end, { short: true }), rowHeader: true },
      { label: 'Who', cell: d => who(d.a.requester) },
      { label: 'Role', cell: d => d.a.request.grant_role },
      { label: 'Resource', cell: d => d.a.resource },
      { label: 'Outcome', cell: d => badge(d.outcome === 'approved' ? 'granted' : d.outcome === 'revoked' ? 'revoked before its expiry' : d.outcome, d.outcome === 'expired' ? '' : d.outcome) },
      { label: 'Decided by', cell: d => d.a.denial ? d.a.denial.by : (d.a.approvals || []).map(v => v.by).join(', ') },
      { label: 'Reason', cell: d => d.a.denial?.reason || d.a.request.reason || '' },
    ], done.slice(0, 50), { id: 'grants-ended-table', 'data-testid': 'grants-ended-table' }));
  }

  function askRevoke(g, opener) {
    const why = h('textarea', { id: 'revoke-reason', rows: 2, required: true, 'data-testid': 'revoke-reason' });
    const err = h('div', { class: 'error', role: 'alert', 'data-testid': 'revoke-error' });
    const confirm = h('button', { type: 'submit', class: 'danger', id: 'revoke-confirm', 'data-testid': 'revoke-confirm', text: 'Revoke now' });
    const cancel = h('button', { type: 'button', id: 'revoke-cancel', text: 'Cancel', onclick: () => { clear(revokeBox); opener.focus(); } });
    const f = h('form', { class: 'card', 'aria-labelledby': 'h-revoke', 'data-testid': 'revoke-form' },
      h('h3', { id: 'h-revoke', text: `Revoke ${g.role} on ${g.resource} for ${g.subject}` }),
      h('p', { text: g.on_expiry === 'next_statement' ? 'The grant ends now; its sessions lose its rights at their next statement.' : 'The grant ends now, and the sessions that used it end.' }),
      field('Reason (required; recorded, and told to the person whose session ends)', why),
      h('div', { class: 'actions' }, confirm, cancel), err);
    f.addEventListener('submit', async e => {
      e.preventDefault();
      if (!why.value.trim()) {
        err.textContent = 'A revocation needs a reason.';
        why.setAttribute('aria-invalid', 'true');
        why.focus();
        return;
      }
      confirm.disabled = true;
      try {
        await api('/api/v1/revocations', { method: 'POST', body: { kind: 'grant', value: g.id, reason: why.value.trim() } });
        clear(revokeBox).append(h('p', { class: 'ok-box', role: 'status', text: `Revoked ${g.role} on ${g.resource} for ${g.subject}.` }));
        announce('Grant revoked.');
        setTimeout(load, 1000); // the grant leaves gh_grants once the revocation is applied
      } catch (ex) {
        err.textContent = 'Not revoked: ' + errorText(ex);
        confirm.disabled = false;
      }
    });
    clear(revokeBox).append(f);
    why.focus();
  }

  load();
  return () => ctl.abort();
}

function hours(sec) {
  if (!sec) return '';
  if (sec % 3600 === 0) return `${sec / 3600} h`;
  if (sec % 60 === 0) return `${sec / 60} min`;
  return `${sec} s`;
}

// The JSON API (/api/v1) as the pages call it: same origin, the session cookie
// authenticates, every state change carries the session's CSRF token (from /api/v1/me).

let me = null;

// APIError is an answer that was not 2xx: status and the API's message.
export class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// loadMe reads who is signed in (and the CSRF token). A session that ended sends the
// browser to the sign-in page.
export async function loadMe() {
  me = await api('/api/v1/me');
  return me;
}

export function currentMe() {
  return me;
}

export function hasRole(role) {
  return !!me && Array.isArray(me.roles) && me.roles.includes(role);
}

function signInAgain() {
  const next = location.pathname + location.search;
  location.assign('/auth/login?ended=1&next=' + encodeURIComponent(next));
}

// api calls the API and returns its JSON answer (or text, with {text: true}); an error
// answer throws an APIError with the API's message. {poll: true} marks a background poll.
export async function api(path, opts = {}) {
  const method = opts.method || 'GET';
  const headers = { Accept: opts.text ? 'application/yaml, text/plain, */*' : 'application/json' };
  // A page's own polling is not the person at work: it does not keep the session from
  // ending when idle.
  if (opts.poll) headers['X-Gatehouse-Poll'] = '1';
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  if (method !== 'GET' && method !== 'HEAD') {
    if (!me || !me.csrf) throw new APIError(0, 'no CSRF token: reload the page');
    headers['X-CSRF-Token'] = me.csrf;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, credentials: 'same-origin', signal: opts.signal, cache: 'no-store' });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new APIError(0, 'the server could not be reached: ' + err.message);
  }
  if (res.status === 401 && !opts.noRedirect) {
    signInAgain();
    throw new APIError(401, 'your session has ended: sign in again');
  }
  if (!res.ok) {
    let msg = res.statusText || 'request failed';
    const text = await res.text().catch(() => '');
    try {
      const j = JSON.parse(text);
      if (j && typeof j.message === 'string') msg = j.message;
      else if (j && typeof j.error === 'string') msg = j.error;
    } catch {
      if (text && text.length < 500) msg = text.trim();
    }
    throw new APIError(res.status, msg);
  }
  if (opts.text) return res.text();
  if (opts.response) return res;
  if (res.status === 204) return null;
  try {
    return await res.json();
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    // A streamed answer (a session's replay) that stopped midway.
    throw new APIError(res.status, 'the answer could not be read whole (it was cut off): ' + err.message);
  }
}

// query builds a query string from an object, leaving out empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

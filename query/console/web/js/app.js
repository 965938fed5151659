// The console's single-page app: a small router over the History API. Each page is a
// module with render(main, ctx) that fills <main> and returns a function that stops what
// it started (polling, players). Page modules load when first visited.
import { h, clear, errorBox } from './dom.js';
import { loadMe, currentMe } from './api.js';

const routes = [
  { re: /^\/(?:approvals)?$/, nav: 'approvals', load: () => import('./approvals.js') },
  { re: /^\/sessions$/, nav: 'sessions', load: () => import('./sessions.js') },
  { re: /^\/sessions\/([^/]+)$/, nav: 'sessions', load: () => import('./session.js'), params: ['id'] },
  { re: /^\/evidence$/, nav: 'evidence', load: () => import('./evidence.js') },
  { re: /^\/grants$/, nav: 'grants', load: () => import('./grants.js') },
  { re: /^\/resources$/, nav: 'resources', load: () => import('./resources.js') },
];

let stop = null;
let renderSeq = 0;

function match(path) {
  for (const r of routes) {
    const m = r.re.exec(path);
    if (m) {
      const params = {};
      try {
        (r.params || []).forEach((p, i) => { params[p] = decodeURIComponent(m[i + 1]); });
      } catch {
        return null; // a malformed %-escape: no such page, rather than a broken one
      }
      return { route: r, params };
    }
  }
  return null;
}

// navigate goes to a console path (pushing it on the history, or replacing the current
// entry), and renders it.
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render(true);
}

function setNav(nav) {
  for (const a of document.querySelectorAll('.site-nav a')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// pageHeading sets the page's one h1 and the document title; focus goes to it after a
// navigation (so a screen reader says where the person is, and Tab starts from there).
function pageHeading(main, text, focus) {
  const h1 = h('h1', { id: 'page-heading', tabindex: '-1', text });
  main.prepend(h1);
  document.title = text + ' · Gatehouse';
  if (focus) h1.focus();
  return h1;
}

async function render(focus) {
  const seq = ++renderSeq;
  if (stop) {
    try { stop(); } catch (e) { console.error(e); }
    stop = null;
  }
  const main = document.getElementById('main');
  const m = match(location.pathname);
  if (!m) {
    clear(main);
    setNav('');
    pageHeading(main, 'Page not found', focus);
    main.append(h('p', null, 'There is no console page at this address. ', h('a', { href: '/approvals', text: 'Go to approvals' }), '.'));
    return;
  }
  setNav(m.route.nav);
  let mod;
  try {
    mod = await m.route.load();
  } catch (err) {
    clear(main);
    pageHeading(main, 'The page could not load', focus);
    main.append(errorBox(err));
    return;
  }
  if (seq !== renderSeq) return; // another navigation came first
  clear(main);
  const ctx = {
    params: m.params,
    query: new URLSearchParams(location.search),
    me: currentMe(),
    navigate,
    heading: text => pageHeading(main, text, focus),
  };
  try {
    stop = mod.render(main, ctx) || null;
    if (stop && typeof stop.then === 'function') {
      const p = stop;
      stop = null;
      const s = await p;
      if (seq === renderSeq) stop = s || null;
      else if (s) s();
    }
  } catch (err) {
    console.error(err);
    main.append(errorBox(err));
  }
}

// Links to console pages stay in the app; others (downloads, the API) are followed.
document.addEventListener('click', e => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !match(url.pathname)) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener('popstate', () => render(true));

function showWho(me) {
  document.getElementById('who-name').textContent = me.name || me.subject;
  document.getElementById('who-name').title = 'subject ' + me.subject + (me.groups.length ? '; groups ' + me.groups.join(', ') : '');
  document.getElementById('who-roles').textContent = me.roles.length ? '(' + me.roles.join(', ') + ')' : '';
  document.getElementById('logout-csrf').value = me.csrf || '';
}

async function boot() {
  try {
    const me = await loadMe();
    showWho(me);
  } catch (err) {
    const main = clear(document.getElementById('main'));
    pageHeading(main, 'The console could not start', false);
    main.append(errorBox(err));
    return;
  }
  render(false);
}

boot();

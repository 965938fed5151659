// Terminal recordings (SSH channels, kubectl exec) in the vendored asciinema player,
// fed from GET /api/v1/sessions/:id/asciicast. The player (vendor/asciinema-player.min.js,
// ~230 KB) loads only when a recording is played. It works under the console's CSP: its
// terminal is WebAssembly compiled from bytes in the script ('wasm-unsafe-eval'), its
// styles come from vendor/asciinema-player.css, and it sets element styles through the
// CSSOM only (no style attributes in markup, no <style> elements).
import { h, clear, errorText, time, duration } from './dom.js';
import { api } from './api.js';

let loading = null;

// loadPlayer adds the player's script and stylesheet once.
export function loadPlayer() {
  if (window.AsciinemaPlayer) return Promise.resolve(window.AsciinemaPlayer);
  if (loading) return loading;
  loading = new Promise((resolve, reject) => {
    document.head.append(h('link', { rel: 'stylesheet', href: '/assets/vendor/asciinema-player.css' }));
    const s = h('script', { src: '/assets/vendor/asciinema-player.min.js' });
    s.addEventListener('load', () => (window.AsciinemaPlayer ? resolve(window.AsciinemaPlayer) : reject(new Error('the player did not load'))));
    s.addEventListener('error', () => {
      loading = null;
      reject(new Error('the player script could not be loaded'));
    });
    document.head.append(s);
  });
  return loading;
}

// terminalsFromEvents lists a session's recorded terminals from its events (when the
// server gives no list): SSH channels with ssh.io, Kubernetes execs with kube.io.
export function terminalsFromEvents(events) {
  const requests = new Map();
  const out = new Map();
  for (const e of events) {
    const p = e.payload || {};
    if (e.type === 'ssh.request' || e.type === 'http.request') requests.set(p.query_id, e);
    if (e.type === 'ssh.io' && !out.has('ssh:' + p.channel)) {
      const r = requests.get(p.query_id)?.payload || {};
      out.set('ssh:' + p.channel, {
        kind: 'ssh', channel: p.channel, query_id: p.query_id, started: e.time,
        title: `SSH channel ${p.channel}: ${r.request === 'exec' ? r.command : r.request === 'subsystem' ? 'subsystem ' + r.subsystem : r.request || 'session'}`,
      });
    }
    if (e.type === 'kube.io' && !out.has('kube:' + p.query_id)) {
      const r = requests.get(p.query_id)?.payload || {};
      const cmd = new URLSearchParams(r.query || '').getAll('command').join(' ');
      out.set('kube:' + p.query_id, {
        kind: 'kubernetes', channel: p.query_id, query_id: p.query_id, started: e.time,
        title: `kubectl exec (request ${p.query_id})${cmd ? ': ' + cmd : ''}${r.path ? ' — ' + r.path : ''}`,
      });
    }
  }
  return [...out.values()];
}

// castFromEvents writes a terminal's recording as asciicast v2 from the session's events, as
// the server's asciicast endpoint does (output and resizes, in play order: output keeps its
// recorded order), for a server that does not have the endpoint.
export function castFromEvents(events, t) {
  const ssh = t.kind === 'ssh';
  let cols = 0;
  let rows = 0;
  let opened = null;
  const frames = [];
  for (const e of events) {
    const p = e.payload || {};
    if (ssh && e.type === 'ssh.request' && p.channel === t.channel) {
      if (!opened) opened = e.time;
      if (p.request === 'pty-req') [cols, rows] = [p.cols, p.rows];
    }
    if ((ssh && e.type === 'ssh.io' && p.channel === t.channel) || (!ssh && e.type === 'kube.io' && p.query_id === t.query_id)) {
      if (!opened) opened = e.time;
      frames.push(...(p.frames || []));
    }
  }
  const lines = [JSON.stringify({ version: 2, width: cols || 80, height: rows || 24, timestamp: Math.floor(new Date(opened || Date.now()) / 1000) })];
  let last = 0;
  for (const f of frames) {
    if (f.code !== 'o' && f.code !== 'e' && f.code !== 'r') continue;
    if (f.code === 'r' && !/^[1-9]\d*x[1-9]\d*$/.test(f.data)) continue; // no size (0x0: a client without a pty)
    last = Math.max(f.t_us || 0, last);
    lines.push(JSON.stringify([last / 1e6, f.code === 'r' ? 'r' : 'o', f.data]));
  }
  return lines.join('\n') + '\n';
}

function castURL(session, t) {
  if (t.url) return t.url;
  const n = t.channel ?? t.query_id;
  return `/api/v1/sessions/${encodeURIComponent(session)}/asciicast?channel=${encodeURIComponent(n)}`;
}

function titleOf(t) {
  if (t.title) return t.title;
  if (t.describe) return t.describe;
  return `${t.kind === 'kubernetes' || t.kind === 'kube' ? 'kubectl exec' : 'SSH channel'} ${t.channel ?? t.query_id}${t.command ? ': ' + t.command : ''}`;
}

// playerSection fills sec with one entry per terminal, each with a button that plays it.
// It returns a function that disposes the players.
export function playerSection(sec, session, list, events) {
  const players = [];
  clear(sec).append(h('h2', { id: 'h-terminals', text: 'Terminal recordings' }),
    h('p', { class: 'muted', text: 'What the client’s terminal showed, replayed (content detectors have masked what they found). Space plays and pauses, arrow keys seek.' }));
  list.forEach((t, i) => {
    const n = t.channel ?? t.query_id ?? i;
    const box = h('div', { class: 'player', id: 'player-' + n, 'data-testid': 'player', 'data-channel': n, role: 'region', 'aria-label': 'Terminal recording: ' + titleOf(t) });
    const err = h('div', { class: 'error', role: 'alert' });
    const play = h('button', { type: 'button', class: 'primary', id: 'play-' + n, 'data-testid': 'player-load', text: 'Load the player' });
    const download = h('a', { href: castURL(session, t), download: `session-${session}-terminal-${n}.cast`, 'data-testid': 'player-download', text: 'Download (asciicast v2)' });
    const meta = [t.started || t.opened ? time(t.started || t.opened) : null, t.cols ? ` ${t.cols}×${t.rows}` : '', t.duration_seconds ? ` · ${duration(t.duration_seconds)}` : ''];
    sec.append(h('article', { class: 'card', 'data-testid': 'terminal' },
      h('h3', { text: titleOf(t) }), h('p', { class: 'muted' }, meta), h('div', { class: 'actions' }, play, download), err, box));
    play.addEventListener('click', async () => {
      play.disabled = true;
      err.textContent = '';
      try {
        // The recording is fetched here, so that an API error is shown as the API says it.
        const [AP, cast] = await Promise.all([loadPlayer(), api(castURL(session, t), { text: true }).catch(e => {
          if ((e.status === 404 || e.status === 405) && events && !t.url) return castFromEvents(events, t);
          throw e;
        })]);
        clear(box);
        const p = AP.create({ data: cast }, box, { fit: 'width', idleTimeLimit: 2, preload: true, controls: true, terminalFontSize: 'small' });
        players.push(p);
        play.remove();
        box.querySelector('.ap-player, [tabindex]')?.focus();
      } catch (e) {
        err.textContent = 'The recording could not be played: ' + errorText(e);
        play.disabled = false;
      }
    });
  });
  return () => players.forEach(p => { try { p.dispose(); } catch { /* gone */ } });
}

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

// playable drops what the player cannot take from an asciicast: a resize to no size ("r"
// with 0x0, recorded when a client's pty-req had none), which stops it with an exception.
export function playable(cast) {
  const lines = cast.split('\n');
  return lines.filter((l, i) => i === 0 || !/^\[[\d.e+-]+,\s*"r",\s*"(?![1-9]\d*x[1-9]\d*")/.test(l)).join('\n');
}

function castURL(session, t) {
  return `/api/v1/sessions/${encodeURIComponent(session)}/asciicast?channel=${encodeURIComponent(t.channel)}`;
}

// titleOf names a recording on its session's page (the API's title repeats who, where
// and when, which the page says already).
function titleOf(t) {
  const what = t.kind === 'kubernetes' ? `kubectl exec (request ${t.channel})` : `SSH channel ${t.channel}`;
  return t.command ? `${what}: ${t.command}` : t.description ? `${what}: ${t.description}` : t.title || what;
}

// playerSection fills sec with one entry per terminal (GET /api/v1/sessions/:id/terminals:
// channel, kind ssh or kubernetes, title, description, command, start, duration_seconds,
// frames, cols, rows), each with a button that plays it. It returns a function that
// disposes the players.
export function playerSection(sec, session, list) {
  const players = [];
  clear(sec).append(h('h2', { id: 'h-terminals', text: 'Terminal recordings' }),
    h('p', { class: 'muted', text: 'What the client’s terminal showed, replayed (content detectors have masked what they found). Space plays and pauses, arrow keys seek.' }));
  list.forEach((t, i) => {
    const n = t.channel ?? i;
    const box = h('div', { class: 'player', id: 'player-' + n, 'data-testid': 'player', 'data-channel': n, role: 'region', 'aria-label': 'Terminal recording: ' + titleOf(t) });
    const err = h('div', { class: 'error', role: 'alert' });
    const play = h('button', { type: 'button', class: 'primary', id: 'play-' + n, 'data-testid': 'player-load', text: 'Load the player' });
    const download = h('a', { href: castURL(session, t), download: `session-${session}-terminal-${n}.cast`, 'data-testid': 'player-download', text: 'Download (asciicast v2)' });
    const meta = [t.start ? time(t.start) : null, t.cols ? ` · ${t.cols}×${t.rows}` : '',
      t.duration_seconds ? ` · ${duration(t.duration_seconds)}` : '', t.frames ? ` · ${t.frames} frames` : ''];
    sec.append(h('article', { class: 'card', 'data-testid': 'terminal' },
      h('h3', { text: titleOf(t) }), h('p', { class: 'muted' }, meta), h('div', { class: 'actions' }, play, download), err, box));
    play.addEventListener('click', async () => {
      play.disabled = true;
      err.textContent = '';
      try {
        // The recording is fetched here, so that an API error is shown as the API says it.
        const [AP, cast] = await Promise.all([loadPlayer(), api(castURL(session, t), { text: true })]);
        clear(box);
        const p = AP.create({ data: playable(cast) }, box, { fit: 'width', idleTimeLimit: 2, preload: true, controls: true, terminalFontSize: 'small' });
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

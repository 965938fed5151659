// Charts drawn as inline SVG with DOM calls (no chart library, nothing inline for the CSP
// to refuse: colours are classes of the stylesheet). Each chart has a title and a
// description for screen readers; the table under it is its text alternative.
import { h, s } from './dom.js';

const W = 720;
const PAD = { top: 16, right: 16, bottom: 48, left: 56 };
const COLORS = 8;

// niceMax is the axis' top: four steps of 1, 2 or 5 times a power of ten (counts get whole
// numbers on every grid line).
function niceMax(v) {
  const q = Math.max(v, 1) / 4;
  const p = Math.pow(10, Math.floor(Math.log10(q)));
  for (const m of [1, 2, 5, 10]) if (m * p >= q) return Math.max(m * p, 1) * 4;
  return 40 * p;
}

// legend lists series with their colour swatch (the swatch is decoration: the name says it).
export function legend(names, classOf) {
  return h('ul', { class: 'legend' }, names.map((n, i) =>
    h('li', null, h('span', { class: ['swatch', classOf ? classOf(n, i) : 'c' + (i % COLORS)], 'aria-hidden': 'true' }), n)));
}

// scroller keeps a chart readable on a phone: at least 36rem wide, scrolled sideways.
function scroller(svg, title) {
  return h('div', { class: 'chart-wrap', tabindex: '0', role: 'region', 'aria-label': title + ' (chart)' }, svg);
}

// stackedBars draws one bar per bucket, stacked by series: buckets [{label, values: {series: n}}].
export function stackedBars({ id, title, desc, buckets, series, yLabel }) {
  const H = 280;
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const totals = buckets.map(b => series.reduce((n, k) => n + (b.values[k] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${id}-title ${id}-desc`, id, 'data-testid': id });
  svg.append(s('title', { id: `${id}-title`, text: title }), s('desc', { id: `${id}-desc`, text: desc }));
  const g = s('g', { transform: `translate(${PAD.left},${PAD.top})` });
  svg.append(g);
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    const y = ih - (v / max) * ih;
    g.append(s('line', { class: 'grid', x1: 0, x2: iw, y1: y, y2: y }));
    g.append(s('text', { x: -8, y: y + 4, 'text-anchor': 'end', text: Number.isInteger(v) ? String(v) : v.toFixed(1) }));
  }
  if (yLabel) g.append(s('text', { x: -PAD.left + 12, y: ih / 2, transform: `rotate(-90 ${-PAD.left + 12} ${ih / 2})`, 'text-anchor': 'middle', text: yLabel }));
  const n = Math.max(buckets.length, 1);
  const bw = iw / n;
  const gap = Math.min(bw * 0.2, 6);
  const every = Math.ceil(n / 8); // at most about 8 labels on the axis
  buckets.forEach((b, i) => {
    let y0 = ih;
    series.forEach((k, si) => {
      const v = b.values[k] || 0;
      if (!v) return;
      const hgt = (v / max) * ih;
      y0 -= hgt;
      g.append(s('rect', { class: 'c' + (si % COLORS), x: i * bw + gap / 2, y: y0, width: Math.max(bw - gap, 1), height: hgt },
        s('title', { text: `${b.label}, ${k}: ${v}` })));
    });
    if (i % every === 0) {
      g.append(s('text', { x: i * bw + bw / 2, y: ih + 18, 'text-anchor': 'middle', text: b.short || b.label }));
    }
  });
  g.append(s('line', { class: 'axis', x1: 0, x2: iw, y1: ih, y2: ih }));
  g.append(s('line', { class: 'axis', x1: 0, x2: 0, y1: 0, y2: ih }));
  return scroller(svg, title);
}

// hBars draws horizontal bars per row, stacked by parts: rows [{label, parts: [{name, value, cls}], note}].
export function hBars({ id, title, desc, rows }) {
  const row = 30;
  const left = 190;
  const right = 170;
  const H = PAD.top + rows.length * row + 24;
  const iw = W - left - right;
  const max = niceMax(Math.max(0, ...rows.map(r => r.parts.reduce((n, p) => n + p.value, 0))));
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${id}-title ${id}-desc`, id, 'data-testid': id });
  svg.append(s('title', { id: `${id}-title`, text: title }), s('desc', { id: `${id}-desc`, text: desc }));
  rows.forEach((r, i) => {
    const y = PAD.top + i * row;
    svg.append(s('text', { x: left - 8, y: y + 17, 'text-anchor': 'end', text: r.label.length > 26 ? r.label.slice(0, 25) + '…' : r.label }));
    let x = left;
    for (const p of r.parts) {
      if (!p.value) continue;
      const w = (p.value / max) * iw;
      svg.append(s('rect', { class: p.cls, x, y: y + 4, width: w, height: row - 10 }, s('title', { text: `${r.label}: ${p.value} ${p.name}` })));
      x += w;
    }
    svg.append(s('text', { x: x + 6, y: y + 17, text: r.note || '' }));
  });
  svg.append(s('line', { class: 'axis', x1: left, x2: left, y1: PAD.top - 4, y2: PAD.top + rows.length * row }));
  return scroller(svg, title);
}

// A reader of the YAML the API writes (gopkg.in/yaml.v3's output for GET /api/v1/resources
// and /api/v1/policies): block mappings and sequences, plain, quoted and block scalars,
// empty flow collections. Not a general YAML parser; the page shows the raw text when this
// one fails.

export function parseYAML(text) {
  const raw = String(text).replace(/\r\n/g, '\n').split('\n');
  const lines = raw.map(r => ({ indent: r.length - r.trimStart().length, text: r.trim(), raw: r }));
  let i = 0;
  const skip = () => { while (i < lines.length && (lines[i].text === '' || lines[i].text.startsWith('#'))) i++; };

  function node() {
    skip();
    if (i >= lines.length) return null;
    const l = lines[i];
    return isItem(l.text) ? seq(l.indent) : map(l.indent);
  }

  function seq(ind) {
    const out = [];
    for (skip(); i < lines.length && lines[i].indent === ind && isItem(lines[i].text); skip()) {
      const rest = lines[i].text === '-' ? '' : lines[i].text.slice(2).trim();
      if (rest === '') {
        i++;
        skip();
        out.push(i < lines.length && lines[i].indent > ind ? node() : null);
      } else if (keyOf(rest)) {
        lines[i] = { indent: ind + 2, text: rest, raw: ' '.repeat(ind + 2) + rest }; // the item's first key
        out.push(map(ind + 2));
      } else {
        i++;
        out.push(scalar(rest));
      }
    }
    return out;
  }

  function map(ind) {
    const out = {};
    for (skip(); i < lines.length && lines[i].indent === ind && !isItem(lines[i].text); skip()) {
      const kv = keyOf(lines[i].text);
      if (!kv) throw new Error(`line ${i + 1}: not a key: ${lines[i].text}`);
      i++;
      const [k, rest] = kv;
      if (rest === '') {
        skip();
        const next = lines[i];
        out[k] = next && (next.indent > ind || (next.indent === ind && isItem(next.text))) ? node() : null;
      } else if (/^[|>][-+]?\d*$/.test(rest)) {
        out[k] = block(ind, rest);
      } else {
        out[k] = scalar(rest);
      }
    }
    return out;
  }

  function block(ind, style) {
    const body = [];
    while (i < lines.length && (lines[i].text === '' || lines[i].indent > ind)) body.push(lines[i++].raw);
    while (body.length && body[body.length - 1].trim() === '') body.pop();
    const cut = Math.min(...body.filter(b => b.trim()).map(b => b.length - b.trimStart().length));
    const text = body.map(b => b.slice(cut)).join(style.startsWith('>') ? ' ' : '\n');
    return style.includes('-') ? text : text + '\n';
  }

  const v = node();
  skip();
  if (i < lines.length) throw new Error(`line ${i + 1}: unexpected ${lines[i].text}`);
  return v;
}

function isItem(t) {
  return t === '-' || t.startsWith('- ');
}

function keyOf(t) {
  const m = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s'"#:[\]{}][^:#]*?)\s*:(?:\s+(.*))?$/.exec(t);
  if (!m) return null;
  let k = m[1];
  if (k.startsWith('"')) k = JSON.parse(k);
  else if (k.startsWith("'")) k = k.slice(1, -1).replaceAll("''", "'");
  return [k, (m[2] || '').trim()];
}

function scalar(s) {
  if (s === 'null' || s === '~') return null;
  if (s === 'true') return true;
  if (s === 'false') return false;
  if (s === '[]') return [];
  if (s === '{}') return {};
  if (s.startsWith('"')) return JSON.parse(s);
  if (s.startsWith("'")) return s.slice(1, -1).replaceAll("''", "'");
  if (s.startsWith('[') && s.endsWith(']')) return s.slice(1, -1).split(',').map(x => scalar(x.trim()));
  return s;
}

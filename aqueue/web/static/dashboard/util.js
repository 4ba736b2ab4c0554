// aqueue dashboard: building elements and formatting figures.
// Every piece of job data reaches the page through h(), which writes it with textContent or as a text node,
// never as HTML.

export const $ = (id) => document.getElementById(id);

export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'onclick') node.addEventListener('click', value);
    else node.setAttribute(key, String(value)); // attribute names are literals of this file
  }
  for (const child of children) {
    if (child !== undefined && child !== null) node.append(child); // a string becomes a text node
  }
  return node;
}

export function parseId(id) {
  const [ms, seq] = String(id).split('-');
  return [Number(ms) || 0, Number(seq) || 0];
}

export function newerId(a, b) {
  if (!a) return b;
  const [am, as] = parseId(a);
  const [bm, bs] = parseId(b);
  return bm > am || (bm === am && bs > as) ? b : a;
}

export function clock(ms) {
  if (!ms) return '';
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

export function num(value, digits) {
  if (value === undefined || value === null || Number.isNaN(Number(value))) return '–';
  const n = Number(value);
  return digits === undefined ? n.toLocaleString() : n.toFixed(digits);
}

export function pct(fraction) {
  return fraction === undefined || fraction === null ? '–' : (100 * Number(fraction)).toFixed(1) + '%';
}

export function seconds(s) {
  if (s === undefined || s === null) return '';
  return s < 1 ? Math.round(s * 1000) + ' ms' : s.toFixed(s < 10 ? 2 : 1) + ' s';
}

// aqueue dashboard: the two charts, drawn by hand on canvas (fillText for axis labels and marks: numbers and
// scaling steps, never job data; the page's text goes through textContent).

import { $ } from './util.js';
import { WINDOW_MS, state } from './state.js';

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * step) return m * step;
  return 10 * step;
}

function chart(canvas, series, marks, rightLabel) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const pad = { left: 48, right: rightLabel ? 48 : 12, top: 10, bottom: 22 };
  const w = width - pad.left - pad.right;
  const hgt = height - pad.top - pad.bottom;
  const now = Date.now() + state.clockOffset;
  // The span grows from one minute to WINDOW_MS as data accumulates, so a freshly opened page is readable.
  const span = Math.min(WINDOW_MS, Math.max(60000, state.points.length ? now - state.points[0].t : 0));
  const x = (t) => pad.left + w * (1 - (now - t) / span);
  const maxOf = (axis) => niceMax(Math.max(0, ...series.filter((s) => s.axis === axis)
    .flatMap((s) => state.points.map((p) => Number(p[s.key]) || 0))));
  const max = { left: maxOf('left'), right: rightLabel ? Math.max(maxOf('right'), 5) : 1 };
  const y = (v, axis) => pad.top + hgt * (1 - v / max[axis]);

  ctx.font = '11px system-ui, sans-serif';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i += 1) {
    const gy = pad.top + (hgt * i) / 4;
    ctx.strokeStyle = '#e2e6ee';
    ctx.beginPath(); ctx.moveTo(pad.left, gy); ctx.lineTo(pad.left + w, gy); ctx.stroke();
    ctx.fillStyle = '#6b7385';
    ctx.textAlign = 'right';
    ctx.fillText(trim(max.left * (1 - i / 4)), pad.left - 6, gy + 4);
    if (rightLabel) {
      ctx.textAlign = 'left';
      ctx.fillText(trim(max.right * (1 - i / 4)) + rightLabel, pad.left + w + 6, gy + 4);
    }
  }
  ctx.textAlign = 'center';
  const tick = span <= 60000 ? 10000 : 60000;
  for (let back = 0; back <= span; back += tick) {
    const label = back === 0 ? 'now' : '−' + (tick === 60000 ? back / 60000 + ' min' : back / 1000 + ' s');
    ctx.fillText(label, Math.max(x(now - back), pad.left + 12), height - 6);
  }

  let labelledUpTo = -Infinity;
  for (const mark of marks) {
    const mx = x(mark.t);
    if (mx < pad.left) continue;
    ctx.strokeStyle = 'rgba(124, 77, 204, .6)';
    ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.moveTo(mx, pad.top); ctx.lineTo(mx, pad.top + hgt); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = '#7c4dcc';
    ctx.textAlign = 'left';
    if (mx > labelledUpTo) { // labels of decisions close together would overlap: the first one speaks
      ctx.fillText(mark.label, mx + 3, pad.top + 10);
      labelledUpTo = mx + ctx.measureText(mark.label).width + 8;
    }
  }
  for (const s of series) {
    const pts = state.points.filter((p) => p[s.key] !== undefined && p[s.key] !== null);
    if (!pts.length) continue;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = s.width || 2;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, x(p.t), y(Number(p[s.key]), s.axis)));
    ctx.stroke();
    if (s.fill) {
      ctx.lineTo(x(pts[pts.length - 1].t), pad.top + hgt);
      ctx.lineTo(x(pts[0].t), pad.top + hgt);
      ctx.closePath();
      ctx.fillStyle = s.fill;
      ctx.fill();
    }
  }
}

function trim(v) {
  return v >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1);
}

export function drawRates() {
  chart($('rate-chart'), [
    { key: 'arrival', axis: 'left', color: '#8a94a8', width: 1.5 },
    { key: 'throughput', axis: 'left', color: '#2f6fed', fill: 'rgba(47, 111, 237, .08)' },
    { key: 'errors', axis: 'right', color: '#d64545', width: 1.5 },
  ], [], '%');
}

export function drawConcurrency() {
  chart($('concurrency-chart'), [
    { key: 'target', axis: 'left', color: '#2f6fed' },
    { key: 'busy', axis: 'left', color: '#1f9d55', fill: 'rgba(31, 157, 85, .08)' },
  ], state.marks, null);
}

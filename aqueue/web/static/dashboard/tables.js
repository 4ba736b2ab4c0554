// aqueue dashboard: rendering the figures, tables and job details. Every cell is built with h(), so job data is
// written with textContent or as a text node, never as HTML.

import { drawConcurrency, drawRates } from './charts.js';
import { cancel, reprocess, rerun } from './actions.js';
import { FINISHED, chooseQueue, figures, requestJob, scheduleRender, state } from './state.js';
import { $, clock, h, num, pct, seconds } from './util.js';

const RERUNNABLE = new Set(['dead', 'failed', 'cancelled', 'expired']);

export function render() {
  state.renderPending = false;
  renderScope();
  if (state.status) {
    const f = figures(state.status);
    renderCards(f);
    renderLimits(f);
    if (state.overview) renderQueues(state.status.queues || {});
    else renderWorkers(f.workers);
    if (state.seenMetrics) {
      drawRates();
      if (!state.overview) drawConcurrency();
    }
  }
  renderPaused();
  renderJobs();
  renderDead();
  renderScaling();
  if (state.status) renderCron(figures(state.status).cron);
}

// -- several queues: the selector, the overview table, what only one queue's view shows ---------------------

function renderScope() {
  const several = state.queues.length > 1;
  $('queue-select-label').hidden = !several;
  const select = $('queue-select');
  const options = several ? ['', ...state.queues] : [];
  const current = Array.from(select.options).map((o) => o.value);
  if (current.join('\n') !== options.join('\n')) {
    select.replaceChildren(...options.map((name) => h('option', { value: name, text: name || 'all queues' })));
  }
  select.value = state.queue || '';
  $('queues-panel').hidden = !state.overview;
  for (const panel of document.querySelectorAll('[data-scope="queue"]')) panel.hidden = state.overview;
  // Pause and resume act on one queue: pick it first.
  $('pause').hidden = state.overview;
  $('resume').hidden = state.overview;
}

function renderQueues(queues) {
  syncRows('queues', Object.entries(queues).map(([name, q]) => {
    const cells = [name, num(q.queued), num(q.scheduled), num(q.active), num(q.dead_letter), num(q.workers),
      num(q.busy) + ' / ' + num(q.concurrency), num(q.throughput, 1), pct(q.error_rate), q.paused ? 'paused' : ''];
    return {
      key: name,
      sig: JSON.stringify(cells),
      build: () => {
        const row = h('tr', { 'data-queue': name },
          ...cells.map((text, i) => h('td', { class: i === 0 ? 'mono' : i <= 8 ? 'num' : null, title: i === 0 ? text : null, text })));
        row.addEventListener('click', () => chooseQueue(name));
        return row;
      },
    };
  }), 10, 'no queue');
}

function renderLimits(f) {
  const shown = f.limits.length > 0 || f.groups > 0;
  $('limits-panel').hidden = !shown;
  if (!shown) return;
  syncRows('limits', f.limits.map((l) => {
    const cells = [l.kind, l.name, num(l.running) + ' / ' + (l.limit === null || l.limit === undefined ? '∞' : num(l.limit)), num(l.waiting)];
    const full = l.limit !== null && l.limit !== undefined && Number(l.running) >= Number(l.limit);
    return {
      key: l.kind + '\n' + l.name,
      sig: JSON.stringify([cells, full]),
      build: () => h('tr', { class: full ? 'full' : null },
        ...cells.map((text, i) => h('td', { class: i >= 2 ? 'num' : null, title: i === 1 ? text : null, text }))),
    };
  }), 4, 'no limit in use');
  $('groups-line').textContent = f.groups ? num(f.grouped) + ' jobs waiting in ' + num(f.groups) + ' groups' : '';
}

function renderPaused() {
  const banner = $('paused-banner');
  const p = state.paused;
  banner.hidden = !p;
  $('pause').disabled = Boolean(p);
  $('resume').disabled = !p;
  if (!p) return;
  const since = p.at ? ' since ' + clock(Number(p.at) * 1000) : '';
  banner.textContent = 'Queue paused' + (p.by ? ' by ' + p.by : '') + since
    + ': no job starts until it is resumed (running jobs finish).';
}

function card(label, value, kind) {
  return h('div', { class: 'card' + (kind ? ' ' + kind : '') }, h('div', { class: 'label', text: label }),
    h('div', { class: 'value', text: value }));
}

function renderCards(f) {
  const cards = Object.entries(f.depths).map(([level, n]) => card(level, num(n)));
  cards.push(card('scheduled', num(f.scheduled)), card('active', num(f.active)),
    card('dead letters', num(f.dead), Number(f.dead) > 0 ? 'bad' : ''),
    card('oldest wait', seconds(f.oldestWait) || '0 ms'), card('finished/s', num(f.throughput, 1)), card('enqueued/s', num(f.arrival, 1)),
    card('error rate', pct(f.errorRate), Number(f.errorRate) > 0.05 ? 'bad' : ''),
    card('workers', num(f.workerCount), f.workerCount ? 'ok' : 'bad'));
  $('cards').replaceChildren(...cards);
}

function emptyRow(columns, text) {
  return h('tr', null, h('td', { class: 'empty', colspan: columns, text }));
}

// Rows are kept by key and rebuilt only when what they show changes, so a row (and its button) under the
// pointer is not swapped for a copy between mouse-down and mouse-up.
const rowCache = new Map(); // tbody -> Map(key -> {sig, row})

function syncRows(table, entries, columns, emptyText) {
  const tbody = $(table).tBodies[0];
  const cache = rowCache.get(tbody) || new Map();
  const next = new Map();
  const rows = entries.map(({ key, sig, build }) => {
    let kept = cache.get(key);
    if (!kept || kept.sig !== sig) kept = { sig, row: build() };
    next.set(key, kept);
    return kept.row;
  });
  rowCache.set(tbody, next);
  if (!rows.length) rows.push(emptyRow(columns, emptyText));
  const current = tbody.children;
  if (current.length === rows.length && rows.every((row, i) => current[i] === row)) return;
  tbody.replaceChildren(...rows);
}

function renderWorkers(workers) {
  $('worker-count').textContent = workers.length + ' live';
  syncRows('workers', workers.map((w) => {
    const range = w.min_concurrency !== undefined && w.min_concurrency !== w.max_concurrency
      ? ' (' + w.min_concurrency + '–' + w.max_concurrency + ')' : '';
    const age = w.heartbeat_age === null || w.heartbeat_age === undefined ? '' : seconds(w.heartbeat_age) + ' ago';
    const cells = [w.id, w.host ?? '', w.pid ?? '', w.strategy ?? '', num(w.concurrency) + range, num(w.busy),
      num(w.processed), num(w.failed), pct(w.success_rate), age];
    const meta = Object.entries(w.metadata || {}).map(([k, v]) => k + '=' + v).join(' ');
    return {
      key: w.id,
      sig: JSON.stringify([cells, meta]),
      build: () => {
        const row = h('tr', null, ...cells.map((text, i) => h('td', { class: i === 0 ? 'mono' : i >= 4 && i <= 8 ? 'num' : null, title: i === 0 ? text : null, text })));
        // Metadata under the worker's id, as text (textContent): a value is never parsed as HTML.
        if (meta) row.cells[0].append(h('br'), h('small', { class: 'worker-meta', title: meta, text: meta }));
        return row;
      },
    };
  }), 10, 'no live worker');
}

function progressBar(job) {
  if (job.progress === null || job.progress === undefined) {
    if (job.status !== 'active' && job.status !== 'cancelling') return '';
    return h('span', { class: 'progress running', title: 'running' }, h('span'));
  }
  const bar = h('span');
  bar.style.width = Math.round(100 * job.progress) + '%';
  const kind = job.status === 'succeeded' ? ' done' : FINISHED.has(job.status) ? ' bad' : '';
  const title = Math.round(100 * job.progress) + '%' + (job.message ? ': ' + job.message : '');
  return h('span', { class: 'progress' + kind, title }, bar);
}

function renderJobs() {
  if (state.pointerOnJobs) return; // hold the list still while the user is about to click in it
  const jobs = Array.from(state.jobs.values()).reverse();
  syncRows('jobs', jobs.map((job) => {
    const took = job.started && job.finished ? (job.finished - job.started) / 1000 : null;
    const selected = job.id === state.selected;
    return {
      key: job.id,
      sig: [job.updated, job.status, job.attempt, job.progress, job.message, took, selected].join('|'),
      build: () => {
        const row = h('tr', { class: selected ? 'selected' : null, 'data-job': job.id },
          h('td', { text: clock(job.updated) }), h('td', { class: 'mono', title: job.id, text: job.id.slice(0, 8) }),
          h('td', { class: 'task', title: job.task, text: job.task }),
          h('td', null, h('span', { class: 'badge ' + job.status, text: job.status })),
          h('td', { class: 'num', text: job.attempt ?? '' }), h('td', null, progressBar(job)),
          h('td', { class: 'num', text: seconds(took) }));
        row.addEventListener('click', () => selectJob(job.id));
        return row;
      },
    };
  }), 7, 'no job seen yet');
}

function renderDead() {
  const entries = Array.from(state.dead.values()).reverse();
  $('dead-count').textContent = entries.length ? entries.length + ' shown' : '';
  syncRows('dead', entries.map((d) => ({
    key: d.job,
    sig: [d.t, d.task, d.reason].join('|'),
    build: () => h('tr', { 'data-job': d.job },
      h('td', { text: clock(d.t) }), h('td', { class: 'mono', title: d.job, text: String(d.job).slice(0, 12) }),
      h('td', { title: d.task, text: d.task }), h('td', { title: d.reason, text: d.reason ?? '' }),
      h('td', null, h('button', { type: 'button', class: 'small reprocess', onclick: (e) => reprocess(d.job, e.target, d.queue), text: 'Reprocess' }))),
  })), 5, 'the dead-letter queue is empty');
}

function renderCron(crons) {
  const at = (s) => (s ? new Date(Number(s) * 1000).toLocaleString() : '–');
  syncRows('cron', crons.map((c) => {
    const cells = [c.name, c.task, c.schedule, at(c.next_run), at(c.last_run), c.last_job ? String(c.last_job).slice(0, 12) : '–'];
    return {
      key: c.name,
      sig: JSON.stringify(cells),
      build: () => h('tr', null, ...cells.map((text, i) => h('td', { class: i === 5 ? 'mono' : null, title: text, text }))),
    };
  }), 6, 'no cron job');
}

function renderScaling() {
  syncRows('scaling', state.scaling.map((d) => ({
    key: [d.t, d.worker, d.from, d.to].join('|'),
    sig: '',
    build: () => h('tr', null,
      h('td', { text: clock(d.t) }), h('td', { class: 'mono', title: d.worker, text: String(d.worker ?? '').slice(0, 24) }),
      h('td', { class: 'num', text: d.from + ' → ' + d.to }),
      h('td', { title: d.reason, text: (d.strategy ? d.strategy + ': ' : '') + (d.reason ?? '') })),
  })), 4, 'no scaling decision yet');
}

// -- job details -----------------------------------------------------------------------------------------

function selectJob(id) {
  state.selected = id;
  for (const row of $('jobs').tBodies[0].rows) row.classList.toggle('selected', row.dataset.job === id);
  $('details-id').textContent = id;
  $('details-fields').replaceChildren(h('dd', { text: 'loading…' }));
  requestJob(id);
  scheduleRender();
}

function pre(value) {
  return h('pre', { text: typeof value === 'string' ? value : JSON.stringify(value, null, 2) });
}

// What the job logged: {timestamp, level, message} lines, as plain text (messages are the job's, never HTML).
function logLines(logs, dropped) {
  const time = (s) => new Date(s * 1000).toISOString().slice(11, 23);
  const text = logs.map((l) => `${time(l.timestamp)} ${l.level.padEnd(7)} ${l.message}`).join('\n');
  const note = dropped ? `(${dropped} earlier lines dropped; times UTC)\n` : '(times UTC)\n';
  return h('pre', { class: 'logs', text: note + text });
}

export function showJob(id, job, queue) {
  if (id !== state.selected) return;
  const where = queue || (state.jobs.get(id) || {}).queue || state.queue;
  if (!job) {
    $('details-fields').replaceChildren(h('dd', { text: 'no record (never existed, or expired)' }));
    return;
  }
  const when = (s) => (s ? new Date(s * 1000).toLocaleString() : '–');
  const status = h('span', { class: 'badge ' + job.status, text: job.status });
  const button = (cls, action, text) => h('button', { type: 'button', class: 'small ' + cls, onclick: (e) => action(job.id, e.target, where), text });
  const buttons = [];
  if (!FINISHED.has(job.status)) buttons.push(' ', button('cancel', cancel, 'Cancel'));
  // A job that ended badly, or failed and waits for its retry, can run again (POST jobs/{id}/retry; token-protected).
  if (RERUNNABLE.has(job.status)) buttons.push(' ', button('rerun', rerun, 'Re-run'));
  const statusCell = buttons.length ? h('span', null, status, ...buttons) : status;
  const fields = [
    ...(state.overview && where ? [['queue', where]] : []),
    ['task', job.task], ['status', statusCell],
    ['priority', job.priority], ['attempts', job.attempts], ['worker', job.worker || '–'],
    ['enqueued', when(job.enqueued_at)], ['started', when(job.started_at)], ['finished', when(job.finished_at)],
  ];
  if (job.progress !== null && job.progress !== undefined) {
    fields.push(['progress', num(job.progress, 0) + '%' + (job.progress_message ? ' – ' + job.progress_message : '')]);
  }
  if (job.workflow) fields.push(['workflow', (job.step ? job.step + ' of ' : '') + job.workflow]);
  if (job.expires_at && !FINISHED.has(job.status)) fields.push(['expires', when(job.expires_at)]);
  fields.push(['args', pre(job.args)], ['kwargs', pre(job.kwargs)]);
  // Headers are producer-supplied text: shown through pre() (textContent), never as HTML.
  if (job.headers && Object.keys(job.headers).length) fields.push(['headers', pre(job.headers)]);
  if (job.result !== null && job.result !== undefined) fields.push(['result', pre(job.result)]);
  if (job.error) fields.push(['error', pre(job.error)]);
  if (job.traceback) fields.push(['traceback', pre(job.traceback)]);
  if (job.logs && job.logs.length) fields.push(['logs', logLines(job.logs, job.logs_dropped)]);
  const nodes = [];
  for (const [label, value] of fields) nodes.push(h('dt', { text: label }), h('dd', null, value ?? ''));
  $('details-fields').replaceChildren(...nodes);
}

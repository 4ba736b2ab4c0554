// aqueue dashboard: live over the /ws WebSocket (protocol in docs/web.md); never polls.
// Every piece of job data reaches the page through textContent or createTextNode, never as HTML.
'use strict';

(function () {
  const MAX_JOBS = 150; // rows kept in "Recent jobs"
  const WINDOW_MS = 5 * 60 * 1000; // span of both charts
  const RECENT = 200; // events asked for on the first connection, so the job list starts filled
  const MAX_SCALING = 50;
  // After a drop for falling behind, the page asks only for these (rare) types; the charts live on metrics.
  const LOW_VOLUME_TYPES = 'dead,requeued,cancelling,cancelled,expired,scaling,paused,resumed,worker_up,worker_down,'
    + 'workflow_finished,cron,cleanup';
  // The job events that change what a job is doing, and the status each one means. Other events naming a job
  // (duplicate, cron, workflow_finished) say something about it without changing its status.
  const STATUS_OF = {
    enqueued: 'queued', queued: 'queued', requeued: 'queued', scheduled: 'scheduled', throttled: 'scheduled',
    waiting: 'waiting', started: 'active', progress: 'active', cancelling: 'cancelling', succeeded: 'succeeded',
    failed: 'failed', retrying: 'retrying', dead: 'dead', cancelled: 'cancelled', expired: 'expired',
  };
  const FINISHED = new Set(['succeeded', 'dead', 'cancelled', 'expired']);

  const token = new URLSearchParams(location.search).get('token');
  const $ = (id) => document.getElementById(id);

  const state = {
    lastId: null, // newest event id seen: the resume point of the next connection
    status: null, // the latest snapshot/metrics figures
    jobs: new Map(), // job id -> job, least recently updated first
    dead: new Map(), // job id -> dead-letter entry
    scaling: [], // newest first
    points: [], // one per metrics message: {t, throughput, arrival, errors, target, busy}
    marks: [], // scaling decisions on the concurrency chart: {t, label}
    targets: new Map(), // worker id -> its latest scaling decision {t, to}
    clockOffset: 0, // Redis clock minus this browser's clock, ms
    selected: null,
    paused: null, // {at, by} while the queue is paused
    lowVolume: false,
    retries: 0,
    renderPending: false,
    seenMetrics: false,
    pointerOnJobs: false,
  };

  // -- small helpers ---------------------------------------------------------------------------------------

  function h(tag, props, ...children) {
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

  function parseId(id) {
    const [ms, seq] = String(id).split('-');
    return [Number(ms) || 0, Number(seq) || 0];
  }

  function newerId(a, b) {
    if (!a) return b;
    const [am, as] = parseId(a);
    const [bm, bs] = parseId(b);
    return bm > am || (bm === am && bs > as) ? b : a;
  }

  function clock(ms) {
    if (!ms) return '';
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  function num(value, digits) {
    if (value === undefined || value === null || Number.isNaN(Number(value))) return '–';
    const n = Number(value);
    return digits === undefined ? n.toLocaleString() : n.toFixed(digits);
  }

  function pct(fraction) {
    return fraction === undefined || fraction === null ? '–' : (100 * Number(fraction)).toFixed(1) + '%';
  }

  function seconds(s) {
    if (s === undefined || s === null) return '';
    return s < 1 ? Math.round(s * 1000) + ' ms' : s.toFixed(s < 10 ? 2 : 1) + ' s';
  }

  function notice(text) {
    $('notice').textContent = text;
    $('notice').title = text;
  }

  function setConnection(kind, text) {
    $('conn').dataset.state = kind;
    $('conn').textContent = text;
  }

  function scheduleRender() {
    if (state.renderPending) return;
    state.renderPending = true;
    setTimeout(() => requestAnimationFrame(render), 200); // at most five renders a second, however busy
  }

  // -- reading the status figures (the same object as GET /status) -----------------------------------------

  function figures(s) {
    // A worker's figures are as of its last heartbeat; a scaling event since then gives its target sooner.
    const redisNow = Number(s.time) * 1000 || Date.now() + state.clockOffset;
    const workers = (Array.isArray(s.workers) ? s.workers : []).map((w) => {
      const scaled = state.targets.get(w.id);
      const seen = redisNow - (Number(w.heartbeat_age) || 0) * 1000;
      return scaled && scaled.t > seen ? { ...w, concurrency: Number(scaled.to) } : w;
    });
    return {
      queue: s.queue,
      depths: s.depths || {},
      scheduled: s.scheduled,
      active: s.active,
      dead: s.dead_letter,
      oldestWait: s.oldest_wait,
      throughput: s.throughput,
      arrival: s.arrival_rate,
      errorRate: s.error_rate,
      workers,
      target: workers.reduce((sum, w) => sum + (Number(w.concurrency) || 0), 0),
      busy: s.active, // claimed jobs, read from Redis now (workers report theirs only with each heartbeat)
      scaling: Array.isArray(s.scaling) ? s.scaling : [],
      cron: Array.isArray(s.cron) ? s.cron : [],
    };
  }

  // -- messages ----------------------------------------------------------------------------------------------

  function onMessage(message) {
    switch (message.type) {
      case 'snapshot': return onSnapshot(message);
      case 'event': return onEvent(message.id, message.event || {});
      case 'metrics': return onMetrics(message.status || {});
      case 'job': return showJob(message.id, message.job);
      case 'gap':
        return notice('Some events were missed while disconnected (trimmed from the stream); the job list may have holes.');
      case 'error': return notice(message.error || 'error');
      default: return undefined;
    }
  }

  function onSnapshot(message) {
    onMetrics(message.status || {}); // the snapshot's figures are the first point of the charts
    state.lastId = newerId(state.lastId, message.last_id);
    state.dead = new Map();
    for (const entry of (message.dead_letter || []).slice().reverse()) {
      state.dead.set(entry.job, { job: entry.job, task: entry.task, reason: entry.reason, t: parseId(entry.id)[0] });
    }
    const f = figures(state.status);
    if (state.scaling.length === 0) {
      for (const d of f.scaling.slice(0, MAX_SCALING)) addScaling(d, false);
    }
    $('queue-name').textContent = f.queue ? 'queue ' + f.queue : '';
    scheduleRender();
  }

  function onMetrics(status) {
    state.status = status;
    if ('paused' in status) state.paused = status.paused || null;
    state.seenMetrics = true;
    const now = Number(status.time) * 1000 || Date.now();
    state.clockOffset = now - Date.now(); // charts run on the Redis clock, like the event ids
    const f = figures(status);
    state.points.push({
      t: now, throughput: f.throughput, arrival: f.arrival, errors: f.errorRate === undefined ? undefined : 100 * f.errorRate,
      target: f.target, busy: f.busy,
    });
    while (state.points.length && state.points[0].t < now - WINDOW_MS) state.points.shift();
    while (state.marks.length && state.marks[0].t < now - WINDOW_MS) state.marks.shift();
    scheduleRender();
  }

  function onEvent(id, event) {
    state.lastId = newerId(state.lastId, id);
    const t = parseId(id)[0];
    if (event.type === 'scaling') addScaling({ ...event, t }, true);
    if (event.type === 'dead') state.dead.set(event.job, { job: event.job, task: event.task, reason: event.error, t });
    if (event.type === 'requeued' || event.type === 'cancelled') state.dead.delete(event.job);
    if (event.type === 'paused') state.paused = pauseOf(event.info, t);
    if (event.type === 'resumed') state.paused = null;
    if (event.job && Object.hasOwn(STATUS_OF, event.type)) updateJob(event, t);
    scheduleRender();
  }

  function updateJob(event, t) {
    let job = state.jobs.get(event.job);
    if (job) state.jobs.delete(event.job); // re-inserted below: the map stays ordered by last update
    else job = { id: event.job, task: event.task, first: t, started: null, finished: null, progress: null };
    job.task = event.task || job.task;
    job.status = STATUS_OF[event.type] || event.type;
    job.updated = t;
    if (event.attempt) job.attempt = event.attempt;
    if (event.type === 'started') { job.started = t; job.finished = null; job.progress = null; }
    if (event.type === 'requeued') { job.started = null; job.finished = null; job.progress = null; }
    if (event.type === 'progress') {
      job.progress = progressOf(event);
      job.message = event.message || '';
    }
    if (FINISHED.has(job.status)) { job.finished = t; if (job.status === 'succeeded') job.progress = 1; }
    state.jobs.set(event.job, job);
    while (state.jobs.size > MAX_JOBS) {
      const oldest = state.jobs.keys().next().value;
      if (oldest === state.selected && state.jobs.size > 1) {
        const keep = state.jobs.get(oldest);
        state.jobs.delete(oldest);
        state.jobs.set(oldest, keep);
        continue;
      }
      state.jobs.delete(oldest);
    }
    if (event.job === state.selected) requestJob(event.job);
  }

  function progressOf(event) {
    const p = Number(event.progress) / 100; // tasks report a percentage
    return event.progress !== '' && Number.isFinite(p) ? Math.max(0, Math.min(1, p)) : null;
  }

  function pauseOf(info, t) {
    // A paused event's info is JSON {at, by}, written by whoever paused; anything else still means paused.
    let parsed = null;
    try { parsed = JSON.parse(info); } catch (e) { parsed = null; }
    if (!parsed || typeof parsed !== 'object') return { at: t / 1000, by: null };
    return { at: Number(parsed.at) || t / 1000, by: parsed.by === undefined || parsed.by === null ? null : String(parsed.by) };
  }

  function addScaling(d, live) {
    const t = d.t || (d.at ? Number(d.at) * 1000 : Date.now());
    const entry = { t, worker: d.worker, from: d.from, to: d.to, reason: d.reason, strategy: d.strategy };
    if (live) state.scaling.unshift(entry);
    else state.scaling.push(entry);
    state.scaling.length = Math.min(state.scaling.length, MAX_SCALING);
    state.marks.push({ t, label: entry.from + '→' + entry.to });
    const known = state.targets.get(entry.worker);
    if (!known || known.t <= t) state.targets.set(entry.worker, { t, to: entry.to });
    state.marks.sort((a, b) => a.t - b.t);
  }

  // -- rendering -----------------------------------------------------------------------------------------

  function render() {
    state.renderPending = false;
    if (state.status) {
      const f = figures(state.status);
      renderCards(f);
      renderWorkers(f.workers);
      if (state.seenMetrics) {
        drawRates();
        drawConcurrency();
      }
    }
    renderPaused();
    renderJobs();
    renderDead();
    renderScaling();
    if (state.status) renderCron(figures(state.status).cron);
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
      card('workers', num(f.workers.length), f.workers.length ? 'ok' : 'bad'));
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
      return {
        key: w.id,
        sig: JSON.stringify(cells),
        build: () => h('tr', null, ...cells.map((text, i) => h('td', { class: i === 0 ? 'mono' : i >= 4 && i <= 8 ? 'num' : null, title: i === 0 ? text : null, text }))),
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
        h('td', null, h('button', { type: 'button', class: 'small reprocess', onclick: (e) => reprocess(d.job, e.target), text: 'Reprocess' }))),
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

  function requestJob(id) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ op: 'job', id }));
  }

  function pre(value) {
    return h('pre', { text: typeof value === 'string' ? value : JSON.stringify(value, null, 2) });
  }

  function showJob(id, job) {
    if (id !== state.selected) return;
    if (!job) {
      $('details-fields').replaceChildren(h('dd', { text: 'no record (never existed, or expired)' }));
      return;
    }
    const when = (s) => (s ? new Date(s * 1000).toLocaleString() : '–');
    const status = h('span', { class: 'badge ' + job.status, text: job.status });
    const statusCell = FINISHED.has(job.status) ? status : h('span', null, status, ' ',
      h('button', { type: 'button', class: 'small cancel', onclick: (e) => cancel(job.id, e.target), text: 'Cancel' }));
    const fields = [
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
    if (job.result !== null && job.result !== undefined) fields.push(['result', pre(job.result)]);
    if (job.error) fields.push(['error', pre(job.error)]);
    if (job.traceback) fields.push(['traceback', pre(job.traceback)]);
    const nodes = [];
    for (const [label, value] of fields) nodes.push(h('dt', { text: label }), h('dd', null, value ?? ''));
    $('details-fields').replaceChildren(...nodes);
  }

  // -- charts (canvas, drawn by hand) ----------------------------------------------------------------------

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

  function drawRates() {
    chart($('rate-chart'), [
      { key: 'arrival', axis: 'left', color: '#8a94a8', width: 1.5 },
      { key: 'throughput', axis: 'left', color: '#2f6fed', fill: 'rgba(47, 111, 237, .08)' },
      { key: 'errors', axis: 'right', color: '#d64545', width: 1.5 },
    ], [], '%');
  }

  function drawConcurrency() {
    chart($('concurrency-chart'), [
      { key: 'target', axis: 'left', color: '#2f6fed' },
      { key: 'busy', axis: 'left', color: '#1f9d55', fill: 'rgba(31, 157, 85, .08)' },
    ], state.marks, null);
  }

  // -- actions: the only HTTP requests the page makes --------------------------------------------------------

  async function post(path, body, method) {
    const headers = { 'Content-Type': 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method: method || 'POST', headers, body: JSON.stringify(body || {}) };
    const response = await fetch(new URL(path, location.href), init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  async function reprocess(job, button) {
    button.disabled = true;
    try {
      const r = await post('dead-letter/reprocess', { ids: [job] });
      const skipped = r.data && Array.isArray(r.data.skipped) ? r.data.skipped : [];
      if (!r.ok) notice('Reprocess failed (' + r.status + '): ' + ((r.data && r.data.error) || 'no message'));
      else if (skipped.length) notice('Not reprocessed: ' + skipped.map((s) => (s.reason ?? JSON.stringify(s))).join('; '));
      else notice('Job ' + job.slice(0, 12) + ' sent back to its queue');
    } catch (e) {
      notice('Reprocess failed: ' + e);
    } finally {
      button.disabled = false;
    }
  }

  async function cancel(job, button) {
    button.disabled = true;
    try {
      const r = await post('jobs/' + encodeURIComponent(job), { reason: 'cancelled from the dashboard' }, 'DELETE');
      if (!r.ok) notice('Cancel failed (' + r.status + '): ' + ((r.data && r.data.error) || 'no message'));
      else notice('Job ' + job.slice(0, 12) + (r.data && r.data.status === 'cancelling' ? ' is being cancelled' : ' cancelled'));
    } catch (e) {
      notice('Cancel failed: ' + e);
    } finally {
      button.disabled = false;
    }
  }

  async function control(action) {
    try {
      const r = await post(action, {});
      if (r.ok && r.data) state.paused = r.data.paused ? { at: r.data.at, by: r.data.by } : null;
      notice(r.ok ? 'Queue ' + (action === 'pause' ? 'paused' : 'resumed')
        : action + ': ' + r.status + ' ' + ((r.data && r.data.error) || ''));
      scheduleRender();
    } catch (e) {
      notice(action + ' failed: ' + e);
    }
  }

  // -- the connection ------------------------------------------------------------------------------------------

  function connect() {
    const url = new URL('ws', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = '';
    if (token) url.searchParams.set('token', token);
    if (state.lastId) url.searchParams.set('since', state.lastId);
    else url.searchParams.set('recent', String(RECENT));
    if (state.lowVolume) url.searchParams.set('types', LOW_VOLUME_TYPES);
    setConnection(state.retries ? 'reconnecting' : 'connecting', state.retries ? 'reconnecting' : 'connecting');
    const ws = new WebSocket(url);
    state.ws = ws;
    ws.addEventListener('open', () => {
      state.retries = 0;
      setConnection('live', state.lowVolume ? 'live (metrics only)' : 'live');
    });
    ws.addEventListener('message', (e) => {
      let message;
      try { message = JSON.parse(e.data); } catch (err) { return; }
      onMessage(message);
    });
    ws.addEventListener('close', (e) => {
      state.ws = null;
      if (e.code === 4400) {
        setConnection('failed', 'refused');
        notice('The server refused the connection: ' + e.reason);
        return;
      }
      if (e.code === 4008) {
        state.lowVolume = true;
        notice('Too many events for this page to follow: the job list is paused; figures stay live (reload to retry).');
      }
      state.retries += 1;
      const delay = Math.min(5000, 250 * 2 ** Math.min(state.retries, 5));
      setConnection('reconnecting', e.code === 1006 && state.retries > 2 ? 'reconnecting (token?)' : 'reconnecting');
      setTimeout(connect, delay);
    });
  }

  const jobsBox = $('jobs').parentElement;
  jobsBox.addEventListener('mouseenter', () => { state.pointerOnJobs = true; });
  jobsBox.addEventListener('mouseleave', () => { state.pointerOnJobs = false; scheduleRender(); });
  $('pause').addEventListener('click', () => control('pause'));
  $('resume').addEventListener('click', () => control('resume'));
  window.addEventListener('resize', scheduleRender);
  render();
  connect();
})();

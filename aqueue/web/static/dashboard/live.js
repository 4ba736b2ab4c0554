// aqueue dashboard: the live connection to /ws (protocol in docs/web.md; the page never polls) and what each
// message changes in the state. The queue's name is written with textContent.

import { showJob } from './tables.js';
import {
  FINISHED, LOW_VOLUME_TYPES, MAX_JOBS, MAX_SCALING, RECENT, STATUS_OF, WINDOW_MS, figures, forgetQueue, notice,
  requestJob, scheduleRender, setConnection, state, token,
} from './state.js';
import { $, newerId, parseId } from './util.js';

function onMessage(message) {
  switch (message.type) {
    case 'snapshot': return onSnapshot(message);
    case 'event': return onEvent(message.id, message.event || {}, message.queue);
    case 'metrics': return onMetrics(message.status || {});
    case 'job': return showJob(message.id, message.job, message.queue);
    case 'gap':
      return notice('Some events were missed while disconnected (trimmed from the stream); the job list may have holes.');
    case 'error': return notice(message.error || 'error');
    default: return undefined;
  }
}

function onSnapshot(message) {
  // With several queues: the queues served (the selector) and whether this feed is the all-queues one.
  if (Array.isArray(message.queues)) state.queues = message.queues;
  state.overview = Boolean(message.last_ids);
  onMetrics(message.status || {}); // the snapshot's figures are the first point of the charts
  state.lastId = newerId(state.lastId, message.last_id);
  state.dead = new Map();
  for (const entry of (message.dead_letter || []).slice().reverse()) {
    state.dead.set(entry.job, {
      job: entry.job, task: entry.task, reason: entry.reason, t: parseId(entry.id)[0], queue: entry.queue || state.queue,
    });
  }
  const f = figures(state.status);
  if (state.scaling.length === 0) {
    for (const d of f.scaling.slice(0, MAX_SCALING)) addScaling(d, false);
  }
  $('queue-name').textContent = state.overview ? 'all queues' : f.queue ? 'queue ' + f.queue : '';
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

function onEvent(id, event, queue) {
  state.lastId = newerId(state.lastId, id);
  queue = queue || state.queue;
  const t = parseId(id)[0];
  if (event.type === 'scaling') addScaling({ ...event, t }, true);
  if (event.type === 'dead') state.dead.set(event.job, { job: event.job, task: event.task, reason: event.error, t, queue });
  if (event.type === 'requeued' || event.type === 'cancelled') state.dead.delete(event.job);
  if (event.type === 'paused') state.paused = pauseOf(event.info, t);
  if (event.type === 'resumed') state.paused = null;
  if (event.job && Object.hasOwn(STATUS_OF, event.type)) updateJob(event, t, queue);
  scheduleRender();
}

function updateJob(event, t, queue) {
  let job = state.jobs.get(event.job);
  if (job) state.jobs.delete(event.job); // re-inserted below: the map stays ordered by last update
  else job = { id: event.job, task: event.task, first: t, started: null, finished: null, progress: null };
  job.task = event.task || job.task;
  job.queue = queue;
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

export function connect() {
  const url = new URL('ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '';
  if (token) url.searchParams.set('token', token);
  if (state.queue) url.searchParams.set('queue', state.queue);
  // The all-queues feed cannot resume (event ids are per queue): it starts again with the newest events.
  if (state.lastId && !state.overview) url.searchParams.set('since', state.lastId);
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
    if (ws.replaced) return; // the page switched to another queue and opened a new socket
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

// Show another queue (or, with null, the overview of all): a new socket, and the page forgets the old queue.
export function switchQueue(name) {
  const old = state.ws;
  state.queue = name || null;
  const page = new URL(location.href);
  if (state.queue) page.searchParams.set('queue', state.queue);
  else page.searchParams.delete('queue');
  history.replaceState(null, '', page);
  forgetQueue();
  state.retries = 0;
  state.ws = null;
  if (old) {
    old.replaced = true;
    old.close();
  }
  $('details-id').textContent = 'none selected';
  $('details-fields').replaceChildren();
  scheduleRender();
  connect();
}

// aqueue dashboard: what the page knows (one state object), its constants, the status line (written with
// textContent), the render schedule, and the figures read from a status object (the same as GET /status).

import { $ } from './util.js';

export const MAX_JOBS = 150; // rows kept in "Recent jobs"
export const WINDOW_MS = 5 * 60 * 1000; // span of both charts
export const RECENT = 200; // events asked for on the first connection, so the job list starts filled
export const MAX_SCALING = 50;
// After a drop for falling behind, the page asks only for these (rare) types; the charts live on metrics.
export const LOW_VOLUME_TYPES = 'dead,requeued,cancelling,cancelled,expired,scaling,paused,resumed,worker_up,worker_down,'
  + 'workflow_finished,cron,cleanup';
// The job events that change what a job is doing, and the status each one means. Other events naming a job
// (duplicate, cron, workflow_finished) say something about it without changing its status.
export const STATUS_OF = {
  enqueued: 'queued', queued: 'queued', requeued: 'queued', scheduled: 'scheduled', throttled: 'scheduled',
  waiting: 'waiting', started: 'active', progress: 'active', cancelling: 'cancelling', succeeded: 'succeeded',
  failed: 'failed', retrying: 'retrying', dead: 'dead', cancelled: 'cancelled', expired: 'expired',
};
export const FINISHED = new Set(['succeeded', 'dead', 'cancelled', 'expired']);

export const token = new URLSearchParams(location.search).get('token');

// An app serving several queues: the page shows one queue (its name in the page's ?queue=, kept on reload) or,
// with none chosen, the overview of all of them. An app serving one queue looks as it always did.

export const state = {
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
  queue: new URLSearchParams(location.search).get('queue') || null, // the queue shown; null: the app's own, or all
  queues: [], // every queue the app serves, when it serves several (from the status' "queues")
  overview: false, // showing every queue at once (the /ws of several queues, naming none)
};

// What a connection learnt about the queue it showed: forgotten when the page switches to another queue.
export function forgetQueue() {
  Object.assign(state, {
    lastId: null, status: null, jobs: new Map(), dead: new Map(), scaling: [], points: [], marks: [],
    targets: new Map(), selected: null, paused: null, seenMetrics: false, overview: false,
  });
}

// The path of a route of one queue ('jobs/…' → 'queues/<queue>/jobs/…'); unprefixed for the app's own queue.
export function queuePath(queue, path) {
  return queue ? 'queues/' + encodeURIComponent(queue) + '/' + path : path;
}

export function notice(text) {
  $('notice').textContent = text;
  $('notice').title = text;
}

export function setConnection(kind, text) {
  $('conn').dataset.state = kind;
  $('conn').textContent = text;
}

let renderer = () => {}; // tables.js's render, set by dashboard.js

export function setRenderer(fn) {
  renderer = fn;
}

let switcher = () => {}; // live.js's switchQueue, set by dashboard.js (tables.js's overview rows call it)

export function setSwitcher(fn) {
  switcher = fn;
}

export function chooseQueue(name) {
  switcher(name);
}

export function scheduleRender() {
  if (state.renderPending) return;
  state.renderPending = true;
  setTimeout(() => requestAnimationFrame(renderer), 200); // at most five renders a second, however busy
}

// The overview's figures: every queue's summed (the error rate weighted by each queue's throughput).
function overviewFigures(s) {
  const queues = Object.values(s.queues || {});
  const sum = (key) => queues.reduce((total, q) => total + (Number(q[key]) || 0), 0);
  const throughput = sum('throughput');
  const errors = queues.reduce((total, q) => total + (Number(q.error_rate) || 0) * (Number(q.throughput) || 0), 0);
  const limits = [];
  for (const [name, q] of Object.entries(s.queues || {})) {
    for (const l of q.limits || []) limits.push({ ...l, name: name + ': ' + l.name });
  }
  return {
    queue: null, depths: { queued: sum('queued') }, scheduled: sum('scheduled'), active: sum('active'),
    dead: sum('dead_letter'), oldestWait: Math.max(0, ...queues.map((q) => Number(q.oldest_wait) || 0)),
    throughput, arrival: sum('arrival_rate'), errorRate: throughput ? errors / throughput : 0,
    workers: [], workerCount: sum('workers'), target: sum('concurrency'), busy: sum('active'), scaling: [], cron: [],
    limits, groups: sum('groups'), grouped: sum('grouped'),
  };
}

export function figures(s) {
  if (state.overview) return overviewFigures(s);
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
    workerCount: workers.length,
    target: workers.reduce((sum, w) => sum + (Number(w.concurrency) || 0), 0),
    busy: s.active, // claimed jobs, read from Redis now (workers report theirs only with each heartbeat)
    scaling: Array.isArray(s.scaling) ? s.scaling : [],
    cron: Array.isArray(s.cron) ? s.cron : [],
    limits: Array.isArray(s.limits) ? s.limits : [],
    groups: Number(s.groups) || 0,
    grouped: Number(s.grouped) || 0,
  };
}

// The socket lives in state.ws (live.js opens it); asking for a job's record is one message on it.
export function requestJob(id) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ op: 'job', id }));
}

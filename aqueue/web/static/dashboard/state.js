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
};

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

export function scheduleRender() {
  if (state.renderPending) return;
  state.renderPending = true;
  setTimeout(() => requestAnimationFrame(renderer), 200); // at most five renders a second, however busy
}

export function figures(s) {
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

// The socket lives in state.ws (live.js opens it); asking for a job's record is one message on it.
export function requestJob(id) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ op: 'job', id }));
}

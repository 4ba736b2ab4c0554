// aqueue dashboard: the buttons' actions, the only HTTP requests the page makes. Their outcome is shown with
// notice() (textContent).

import { notice, queuePath, scheduleRender, state, token } from './state.js';

// ``queue``: the queue the job or action is about (the overview shows several); else the queue the page shows.
async function post(path, body, method, queue) {
  path = queuePath(queue || state.queue, path);
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  const init = { method: method || 'POST', headers, body: JSON.stringify(body || {}) };
  const response = await fetch(new URL(path, location.href), init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return { ok: response.ok, status: response.status, data };
}

export async function reprocess(job, button, queue) {
  button.disabled = true;
  try {
    const r = await post('dead-letter/reprocess', { ids: [job] }, 'POST', queue);
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

// Re-run a finished job (dead, cancelled, expired) or a failed one now: same id, attempts from 0.
export async function rerun(job, button, queue) {
  button.disabled = true;
  try {
    const r = await post('jobs/' + encodeURIComponent(job) + '/retry', {}, 'POST', queue);
    if (!r.ok) notice('Re-run refused (' + r.status + '): ' + ((r.data && r.data.error) || 'no message'));
    else notice('Job ' + job.slice(0, 12) + ' queued to run again');
  } catch (e) {
    notice('Re-run failed: ' + e);
  } finally {
    button.disabled = false;
  }
}

export async function cancel(job, button, queue) {
  button.disabled = true;
  try {
    const r = await post('jobs/' + encodeURIComponent(job), { reason: 'cancelled from the dashboard' }, 'DELETE', queue);
    if (!r.ok) notice('Cancel failed (' + r.status + '): ' + ((r.data && r.data.error) || 'no message'));
    else notice('Job ' + job.slice(0, 12) + (r.data && r.data.status === 'cancelling' ? ' is being cancelled' : ' cancelled'));
  } catch (e) {
    notice('Cancel failed: ' + e);
  } finally {
    button.disabled = false;
  }
}

export async function control(action) {
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

-- Cancel jobs. One that has not started (queued, scheduled, waiting in a workflow, or failed and waiting for its
-- retry) is cancelled at once and never runs. A waiting job's stream entry is deleted here, so that the stream's
-- length less its pending entries stays the number of jobs waiting; an entry the record does not name (see
-- drop_entry) is dropped by the claim that reads it instead, as is one a worker has already read. One that is
-- running is marked, and a 'cancel' command on the control stream tells its worker to cancel the coroutine; the
-- worker settles it as cancelled (a retry of a marked job is recorded as cancelled too).
-- KEYS: events, scheduled, stats
-- ARGV: prefix, events_maxlen, ok_ttl_ms, reason, running ('1': cancel running jobs too, '0': leave them), job ids...
-- Returns one status per job: 'cancelled' (now), 'cancelling' (running; its worker was told), 'running' (running,
-- left alone), 'unknown', or 'already-' and the terminal status it already had ('already-succeeded', ...).
local events, scheduled, stats = KEYS[1], KEYS[2], KEYS[3]
local c = {prefix = ARGV[1], maxlen = ARGV[2], now = now_ms(), ok_ttl = ARGV[3]}
local reason, cancel_running = ARGV[4], ARGV[5] == '1'
local out = {}

-- Delete the stream entry named by a job's record ('msg': enqueue and workflows write it with the entry) unless a
-- worker has read it already (at or before the group's last-delivered id: the claim reading it drops it). It must
-- still be this job's entry: the record of a job that went back to its stream another way (promoted, requeued,
-- given back) names an entry consumed since, and that job's own entry is left to the claim, as before.
local function drop_entry(id, prio, msg)
  if not prio or not msg then return end
  local stream = c.prefix .. K.stream .. prio
  local entry = redis.call('XRANGE', stream, msg, msg)
  if #entry == 0 or field(entry[1][2], 'j') ~= id then return end
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    if not id_less(field(group, 'last-delivered-id'), msg) then return end
  end
  redis.call('XDEL', stream, msg)
end

for i = 6, #ARGV do
  local id = ARGV[i]
  local rec = c.prefix .. K.job .. id
  local f = redis.call('HMGET', rec, 'status', 'task', 'worker', 'priority', 'msg')
  local status, task = f[1], f[2] or ''
  if not status then
    out[#out + 1] = 'unknown'
  elseif TERMINAL[status] then
    out[#out + 1] = 'already-' .. status
  elseif status == 'active' and not cancel_running then
    out[#out + 1] = 'running'
  elseif status == 'active' then
    redis.call('HSET', rec, 'cancel', '1')
    redis.call('XADD', c.prefix .. K.control, 'MAXLEN', '~', 1000, '*', 'cmd', 'cancel', 'job', id,
      'worker', f[3] or '')
    redis.call('XADD', events, 'MAXLEN', '~', c.maxlen, '*', 'type', 'cancelling', 'job', id, 'task', task,
      'worker', f[3] or '', 'reason', reason)
    out[#out + 1] = 'cancelling'
  else
    drop_entry(id, f[4], f[5])  -- queued, or scheduled again by a debounce that left its entry behind
    redis.call('ZREM', scheduled, id)
    redis.call('HSET', rec, 'status', 'cancelled', 'error', reason, 'finished_at', int(c.now))
    redis.call('PEXPIRE', rec, c.ok_ttl)
    redis.call('XADD', events, 'MAXLEN', '~', c.maxlen, '*', 'type', 'cancelled', 'job', id, 'task', task,
      'reason', reason, 'from', status)
    redis.call('HINCRBY', stats, 'cancelled', 1)
    redis.call('HINCRBY', c.prefix .. K.task_stats, 'cancelled:' .. task, 1)
    finish(c, id, 'cancelled')
    out[#out + 1] = 'cancelled'
  end
end
flush_done(c)
return out

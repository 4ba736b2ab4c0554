-- Settle a batch of finished attempts atomically: ack + delete the message, update the record, write events
-- and counters (queue and per task); retries go to the scheduled set, dead jobs to the dead-letter stream.
-- A message that is no longer pending (another worker settled it after taking it back) is skipped, so a job
-- is settled at most once even when it ran twice.
-- KEYS: events, stats, scheduled, dead, wake, stream_1 .. stream_n
-- ARGV: prefix, group, events_maxlen, dead_maxlen, succeeded_ttl_ms, dead_ttl_ms, outcomes
--   outcomes is one JSON array (one argument is far cheaper to build than 7 per job) of
--   [kind, stream index, message id, job id, x, y, z]:
--   kind 'ok':    x = result JSON
--   kind 'retry': x = error, y = traceback, z = delay ms
--   kind 'dead':  x = error, y = traceback
--   kind 'cancel': the running attempt was cancelled on request (job.cancel()); never retried
-- A 'retry' of a job whose cancellation was requested while it ran is recorded as cancelled instead.
-- Terminal jobs go through finish() (prelude): cleanup index, dedup key, workflow dependants.
-- Returns {succeeded, retried, dead, skipped}.
local events, stats, scheduled, dead, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prefix, group, maxlen, dead_maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ok_ttl, dead_ttl = ARGV[5], ARGV[6]
local now = now_ms()
local now_s = int(now)
local c = {prefix = prefix, maxlen = maxlen, now = now, ok_ttl = ok_ttl}
local n_cancel = 0
local n_ok, n_retry, n_dead, n_skip = 0, 0, 0, 0
local earliest = nil
local per_task = {}
local acked = {}  -- stream index -> message ids to delete, one XDEL per stream at the end
for _, o in ipairs(cjson.decode(ARGV[7])) do
  local kind, si, msgid, jobid, x, y, z = o[1], o[2], o[3], o[4], o[5], o[6], o[7]
  local stream = KEYS[5 + si]
  local rec = prefix .. 'job:' .. jobid
  if redis.call('XACK', stream, group, msgid) == 0 then
    n_skip = n_skip + 1
  else
    acked[si] = acked[si] or {}
    table.insert(acked[si], msgid)
    local f = redis.call('HMGET', rec, 'task', 'status', 'attempts', 'cancel', unpack(FINISH_FIELDS))
    local task, status, attempt = f[1] or '', f[2], f[3] or '0'
    if kind == 'retry' and f[4] then kind = 'cancel' end
    local known = {f[5], f[6], f[7], f[8], f[9], f[10]}
    if status == nil or status == false or TERMINAL[status] then
      n_skip = n_skip + 1  -- expired or cancelled meanwhile: nothing to record
    elseif kind == 'cancel' then
      redis.call('HSET', rec, 'status', 'cancelled', 'error', 'cancelled while running', 'finished_at', now_s)
      redis.call('PEXPIRE', rec, ok_ttl)
      redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'cancelled', 'job', jobid, 'task', task,
        'attempt', attempt)
      n_cancel = n_cancel + 1
      count_task(per_task, 'cancelled', task)
      finish(c, jobid, 'cancelled')
    elseif kind == 'ok' then
      redis.call('HSET', rec, 'status', 'succeeded', 'result', x, 'finished_at', now_s)
      redis.call('PEXPIRE', rec, ok_ttl)
      redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'succeeded', 'job', jobid, 'task', task,
        'attempt', attempt)
      n_ok = n_ok + 1
      count_task(per_task, 'succeeded', task)
      finish(c, jobid, 'succeeded', known)
    elseif kind == 'retry' then
      local due = now + tonumber(z)
      redis.call('HSET', rec, 'status', 'failed', 'error', x, 'traceback', y, 'due_at', int(due))
      redis.call('ZADD', scheduled, int(due), jobid)
      redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'failed', 'job', jobid, 'task', task,
        'attempt', attempt, 'error', x)
      redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'retrying', 'job', jobid, 'task', task,
        'attempt', attempt, 'due_at', int(due))
      if earliest == nil or due < earliest then earliest = due end
      n_retry = n_retry + 1
      count_task(per_task, 'retried', task)
      count_task(per_task, 'failed', task)
    else
      redis.call('HSET', rec, 'status', 'dead', 'error', x, 'traceback', y, 'finished_at', now_s)
      redis.call('PEXPIRE', rec, dead_ttl)
      redis.call('XADD', dead, 'MAXLEN', '~', dead_maxlen, '*', 'job', jobid, 'task', task, 'reason', x)
      redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'dead', 'job', jobid, 'task', task,
        'attempt', attempt, 'error', x)
      n_dead = n_dead + 1
      count_task(per_task, 'dead', task)
      count_task(per_task, 'failed', task)
      finish(c, jobid, 'dead')
    end
  end
end
for si, ids in pairs(acked) do
  for j = 1, #ids, 1000 do
    redis.call('XDEL', KEYS[5 + si], unpack(ids, j, math.min(j + 999, #ids)))
  end
end
if n_ok > 0 then redis.call('HINCRBY', stats, 'succeeded', n_ok) end
if n_retry > 0 then
  redis.call('HINCRBY', stats, 'retried', n_retry)
  redis.call('XADD', wake, 'MAXLEN', '1', '*', 'due_at', int(earliest))
end
if n_retry + n_dead > 0 then redis.call('HINCRBY', stats, 'failed', n_retry + n_dead) end
if n_dead > 0 then redis.call('HINCRBY', stats, 'dead', n_dead) end
if n_cancel > 0 then redis.call('HINCRBY', stats, 'cancelled', n_cancel) end
-- Records expire on their own; their entries in the cleanup index go once they are older than the retention.
redis.call('ZREMRANGEBYSCORE', prefix .. 'done:succeeded', '-inf', int(now - tonumber(ok_ttl)))
redis.call('ZREMRANGEBYSCORE', prefix .. 'done:cancelled', '-inf', int(now - tonumber(ok_ttl)))
redis.call('ZREMRANGEBYSCORE', prefix .. 'done:expired', '-inf', int(now - tonumber(ok_ttl)))
redis.call('ZREMRANGEBYSCORE', prefix .. 'done:dead', '-inf', int(now - tonumber(dead_ttl)))
flush_task_counts(prefix, per_task)
return {n_ok, n_retry, n_dead, n_skip}

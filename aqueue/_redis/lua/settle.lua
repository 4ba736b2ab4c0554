-- Settle a batch of finished attempts atomically: ack + delete the message, update the record, write events
-- and counters (queue and per task); retries go to the scheduled set, dead jobs to the dead-letter stream.
-- An attempt is recorded only if the record still says this worker runs it ('active', worker = consumer): a job
-- another worker took back is left to that worker (its message is not acknowledged here), and a job settled
-- already (a retried call, a cancelled or expired job) is only acknowledged. So a job is settled at most once
-- even when it ran twice. Messages are acknowledged and deleted with one XACK and one XDEL per stream.
-- KEYS: events, stats, scheduled, dead, wake, stream_1 .. stream_n
-- ARGV: prefix, group, events_maxlen, dead_maxlen, succeeded_ttl_ms, dead_ttl_ms, outcomes, consumer
--   outcomes is one JSON array (one argument is far cheaper to build than 7 per job) of
--   [kind, stream index, message id, job id, x, y, z]:
--   kind 'ok':    x = result JSON
--   kind 'retry': x = error, y = traceback, z = delay ms
--   kind 'dead':  x = error, y = traceback
--   kind 'cancel': the running attempt was cancelled on request (job.cancel()); never retried
--   then, when the attempt logged anything: its logs (a JSON array of [ms, level, message]) and the number of
--   its lines dropped; they join the record's 'logs' (the last 100 lines, 64 KiB of messages; 'logs_dropped'
--   counts the rest).
-- A 'retry' of a job whose cancellation was requested while it ran is recorded as cancelled instead. The permits
-- the job held (concurrency limits) go back, whatever the outcome.
-- Terminal jobs go through finish() (prelude): cleanup index, dedup key, workflow dependants. A succeeded job
-- enqueued with keep_result (record field 'keep') is then kept as retain() says; with 0 its record is deleted and
-- its 'succeeded' event carries the result.
-- Returns {succeeded, retried, dead, skipped}.
local events, stats, scheduled, dead, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prefix, group, maxlen, dead_maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ok_ttl, dead_ttl = ARGV[5], ARGV[6]
local now = now_ms()
local now_s = int(now)
local consumer = ARGV[8]
local c = {prefix = prefix, maxlen = maxlen, now = now, ok_ttl = ok_ttl, dead_ttl = dead_ttl}
local n_cancel = 0
local n_ok, n_retry, n_dead, n_skip = 0, 0, 0, 0
local earliest = nil
local per_task = {}
local acked = {}  -- stream index -> message ids to delete, one XDEL per stream at the end

-- An attempt's log lines joined to the record's (old): the last 100 lines and 64 KiB of messages (see joblogs.py),
-- as the extra HSET arguments of its settle; the lines dropped are counted in 'logs_dropped'.
local NO_LOGS = {}
local function add_logs(rec, logs, dropped, old)
  if old then
    local lines = cjson.decode(old)
    for _, line in ipairs(cjson.decode(logs)) do lines[#lines + 1] = line end
    local n, size, first = #lines, 0, #lines + 1
    for i = n, math.max(1, n - 99), -1 do
      size = size + #lines[i][3]
      if size > 65536 then break end
      first = i
    end
    local kept = {}
    for i = first, n do kept[#kept + 1] = lines[i] end
    dropped = dropped + first - 1
    logs = cjson.encode(kept)
  end
  if dropped > 0 then redis.call('HINCRBY', rec, 'logs_dropped', dropped) end
  return {'logs', logs}
end
for _, o in ipairs(cjson.decode(ARGV[7])) do
  local kind, si, msgid, jobid, x, y, z = o[1], o[2], o[3], o[4], o[5], o[6], o[7]
  local stream = KEYS[5 + si]
  local rec = prefix .. K.job .. jobid
  local f = redis.call('HMGET', rec, 'task', 'status', 'attempts', 'cancel', 'worker', 'logs', 'keep', 'hold',
    'group', unpack(FINISH_FIELDS))
  local hold, job_group = f[8], f[9]
  if f[5] ~= consumer then
    n_skip = n_skip + 1  -- taken back by another worker meanwhile: its message and its record are that worker's
  else
    acked[si] = acked[si] or {}
    table.insert(acked[si], msgid)
    local task, status, attempt = f[1] or '', f[2], f[3] or '0'
    if kind == 'retry' and f[4] then kind = 'cancel' end
    local logs = NO_LOGS
    if o[8] and status == 'active' then logs = add_logs(rec, o[8], tonumber(o[9]), f[6]) end
    if status == 'active' and hold then free_permits(c, jobid, rec, task, job_group) end
    if status ~= 'active' then
      n_skip = n_skip + 1  -- settled already (a retried call), or cancelled or expired meanwhile
    elseif kind == 'cancel' then
      redis.call('HSET', rec, 'status', 'cancelled', 'error', 'cancelled while running', 'finished_at', now_s,
        unpack(logs))
      redis.call('PEXPIRE', rec, ok_ttl)
      redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'cancelled', 'job', jobid, 'task', task,
        'attempt', attempt)
      n_cancel = n_cancel + 1
      count_task(per_task, 'cancelled', task)
      finish(c, jobid, 'cancelled')
    elseif kind == 'ok' then
      local keep = f[7]  -- absent unless the job was enqueued with keep_result
      redis.call('HSET', rec, 'status', 'succeeded', 'result', x, 'finished_at', now_s, unpack(logs))
      if keep == '0' then  -- the record goes now: the result travels in the event, for a caller already waiting
        redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'succeeded', 'job', jobid, 'task', task,
          'attempt', attempt, 'result', x)
      else
        if not keep then redis.call('PEXPIRE', rec, ok_ttl) end
        redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'succeeded', 'job', jobid, 'task', task,
          'attempt', attempt)
      end
      n_ok = n_ok + 1
      count_task(per_task, 'succeeded', task)
      finish(c, jobid, 'succeeded', f, 10)
      if keep then retain(c, rec, jobid, keep, 'succeeded') end
    elseif kind == 'retry' then
      local due = now + tonumber(z)
      redis.call('HSET', rec, 'status', 'failed', 'error', x, 'traceback', y, 'due_at', int(due), unpack(logs))
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
      redis.call('HSET', rec, 'status', 'dead', 'error', x, 'traceback', y, 'finished_at', now_s, unpack(logs))
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
-- Acknowledge, then remove the settled entries. Entries below both the oldest still-pending one and the newest
-- one settled here have all been delivered (one group reads in order) and none is pending, so one exact XTRIM
-- MINID drops them (whole stream nodes at once, far cheaper than XDEL per entry); the settled entries above that
-- point (a job that finished before an older one still running) are deleted one by one.
for si, ids in pairs(acked) do
  local stream = KEYS[5 + si]
  for j = 1, #ids, 1000 do
    redis.call('XACK', stream, group, unpack(ids, j, math.min(j + 999, #ids)))
  end
  local newest = ids[1]
  for j = 2, #ids do
    if id_less(newest, ids[j]) then newest = ids[j] end
  end
  local cut = id_next(newest)
  local oldest_pending = redis.call('XPENDING', stream, group)[2]
  if oldest_pending and id_less(oldest_pending, cut) then cut = oldest_pending end
  redis.call('XTRIM', stream, 'MINID', cut)
  local rest = {}
  for j = 1, #ids do
    if not id_less(ids[j], cut) then rest[#rest + 1] = ids[j] end
  end
  for j = 1, #rest, 1000 do
    redis.call('XDEL', stream, unpack(rest, j, math.min(j + 999, #rest)))
  end
end
if n_ok > 0 then redis.call('HINCRBY', stats, 'succeeded', n_ok) end
if n_retry > 0 then
  redis.call('HINCRBY', stats, 'retried', n_retry)
  redis.call('XADD', wake, 'MAXLEN', '1', '*', 'due_at', int(earliest))
end
if n_retry + n_dead > 0 then redis.call('HINCRBY', stats, 'failed', n_retry + n_dead) end
if n_dead > 0 then
  redis.call('HINCRBY', stats, 'dead', n_dead)
  age_out(dead, dead_ttl, now)
end
if n_cancel > 0 then redis.call('HINCRBY', stats, 'cancelled', n_cancel) end
flush_done(c)
flush_task_counts(prefix, per_task)
return {n_ok, n_retry, n_dead, n_skip}

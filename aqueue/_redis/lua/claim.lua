-- Claim jobs and mark them active, atomically, returning what a worker needs to run them.
-- KEYS: events, stats, dead, stream_1 .. stream_n (highest priority first)
-- ARGV: prefix, group, consumer, events_maxlen, dead_maxlen, dead_ttl_ms, max_reclaims, mode, lease_ms,
--   ok_ttl_ms, rate limits ('' or JSON, see rate_slot in the prelude), ...
--   mode 'read':  quota_1 .. quota_n, cursor_1 .. cursor_n  (reclaim idle messages first when lease_ms > 0,
--                 then read new ones: each level up to its quota, then any level in order for what is left)
--   mode 'given': triples (stream index, message id, job id) already delivered by a blocking XREADGROUP
--   mode 'taken': triples as for 'given', of messages this consumer holds but no longer runs (left by an earlier
--                 run under the same name): started as taken back
-- While the queue is paused nothing starts: 'read' reads nothing, 'given' puts the delivered messages back.
-- A job past its TTL is expired instead of started; a rate-limited one is scheduled for its reserved slot.
-- Taking back: XAUTOCLAIM also returns this consumer's own idle messages (its heartbeat was late: a Redis stall, a
-- blocked event loop). A job whose record says this consumer runs it is not started again: XAUTOCLAIM has renewed
-- its idle time, and the message is returned in 'own' for the worker to check it still runs it. A job taken back
-- from another consumer counts a reclaim (more than max_reclaims: poison) and an attempt, and is dead-lettered
-- instead of started when that attempt would exceed the job's max_attempts.
-- Returns {cursors, jobs, dead-lettered count, paused 0|1, own, consumed}; jobs is flat: stream index, message id,
-- job id, task, spec, attempt, inputs (the JSON a workflow step receives from its parents, or ''); own is flat:
-- stream index, message id, job id; consumed counts the messages read or taken back, started or not (a batch of
-- stale messages starts nothing but is not an empty queue).
local events, stats, dead = KEYS[1], KEYS[2], KEYS[3]
local prefix, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local maxlen, dead_maxlen, dead_ttl = ARGV[4], ARGV[5], tonumber(ARGV[6])
local max_reclaims, mode, lease = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
local limits = nil
if ARGV[11] ~= '' then limits = cjson.decode(ARGV[11]) end
local n = #KEYS - 3
local now = now_ms()
local now_s = int(now)
local c = {prefix = prefix, maxlen = maxlen, now = now, ok_ttl = ARGV[10], dead_ttl = dead_ttl}
local out = {}
local n_dead, n_expired = 0, 0
local per_task = {}
local earliest = nil
local own = {}
local consumed = 0

if redis.call('EXISTS', prefix .. K.paused) == 1 then
  if mode == 'taken' then return {{}, {}, 0, 1, {}, 0} end  -- left pending here: taken at the next claim
  if mode == 'given' then
    for i = 12, #ARGV, 3 do
      local stream = KEYS[3 + tonumber(ARGV[i])]
      redis.call('XACK', stream, group, ARGV[i + 1])
      redis.call('XDEL', stream, ARGV[i + 1])
      if ARGV[i + 2] ~= '' then redis.call('XADD', stream, '*', 'j', ARGV[i + 2]) end
    end
    return {{}, {}, 0, 1, {}, 0}
  end
  local cursors = {}
  for i = 1, n do cursors[i] = ARGV[11 + n + i] end
  return {cursors, {}, 0, 1, {}, 0}
end

-- The job's max_attempts (its spec's options), or nil when the spec does not say (a job is then not refused).
local function spec_max_attempts(spec)
  local ok, decoded = pcall(cjson.decode, spec)
  if ok and type(decoded) == 'table' and type(decoded.o) == 'table' then
    if decoded.o.rerun_lost == true then return nil end  -- the task opted out: a take-back always runs
    return tonumber(decoded.o.max_attempts)
  end
  return nil
end

local function drop(stream, msgid)
  redis.call('XACK', stream, group, msgid)
  redis.call('XDEL', stream, msgid)
end

local function dead_letter(stream, msgid, jobid, task, reason)
  drop(stream, msgid)
  redis.call('XADD', dead, 'MAXLEN', '~', dead_maxlen, '*', 'job', jobid, 'task', task, 'reason', reason)
  if jobid ~= '' and redis.call('EXISTS', prefix .. K.job .. jobid) == 1 then
    local rec = prefix .. K.job .. jobid
    redis.call('HSET', rec, 'status', 'dead', 'error', reason, 'finished_at', now_s)
    redis.call('PEXPIRE', rec, dead_ttl)
    finish(c, jobid, 'dead')
  end
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'dead', 'job', jobid, 'task', task,
    'error', reason)
  n_dead = n_dead + 1
  count_task(per_task, 'dead', task)
end

local function start(si, msgid, jobid, reclaimed)
  local stream = KEYS[3 + si]
  if jobid == nil or jobid == '' then
    dead_letter(stream, msgid, '', '', 'undecodable stream entry ' .. msgid .. ': no job id')
    return
  end
  local rec = prefix .. K.job .. jobid
  local f = redis.call('HMGET', rec, 'task', 'spec', 'status', 'attempts', 'reclaims', 'expires_at', 'rl', 'inputs',
    'cancel', 'worker')
  local task, spec, status = f[1], f[2], f[3]
  if not task or not spec then
    dead_letter(stream, msgid, jobid, task or '', 'job record missing or incomplete')
    return
  end
  if reclaimed and status == 'active' and f[10] == consumer and mode ~= 'taken' then
    own[#own + 1] = si
    own[#own + 1] = msgid
    own[#own + 1] = jobid
    return
  end
  if status ~= 'queued' and not (reclaimed and status == 'active') then
    -- A stale message: the job ended (e.g. cancelled while queued), went back to the scheduled set (debounced),
    -- or another entry of it already started.
    drop(stream, msgid)
    return
  end
  if f[9] then  -- cancelled while its worker was gone: do not start it again
    drop(stream, msgid)
    redis.call('HSET', rec, 'status', 'cancelled', 'error', 'cancelled', 'finished_at', now_s)
    redis.call('PEXPIRE', rec, c.ok_ttl)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'cancelled', 'job', jobid, 'task', task)
    redis.call('HINCRBY', stats, 'cancelled', 1)
    count_task(per_task, 'cancelled', task)
    finish(c, jobid, 'cancelled')
    return
  end
  local expires = tonumber(f[6])
  if expires and (tonumber(f[4]) or 0) == 0 and now > expires then
    drop(stream, msgid)
    local why = 'expired: not started within its ttl (' .. int(now - expires) .. ' ms late)'
    redis.call('HSET', rec, 'status', 'expired', 'error', why, 'finished_at', now_s)
    redis.call('PEXPIRE', rec, c.ok_ttl)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'expired', 'job', jobid, 'task', task)
    n_expired = n_expired + 1
    count_task(per_task, 'expired', task)
    finish(c, jobid, 'expired')
    return
  end
  if limits then
    local reserved = tonumber(f[7])
    if reserved and now + 5 >= reserved then
      redis.call('HDEL', rec, 'rl')  -- its reserved slot has come
    else
      local at = rate_slot(c, limits, task)
      if at > now then
        drop(stream, msgid)
        redis.call('HSET', rec, 'status', 'scheduled', 'due_at', int(at), 'rl', int(at))
        redis.call('ZADD', prefix .. K.scheduled, int(at), jobid)
        redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'throttled', 'job', jobid, 'task', task,
          'due_at', int(at))
        if earliest == nil or at < earliest then earliest = at end
        return
      end
    end
  end
  local attempt = (tonumber(f[4]) or 0) + 1
  if reclaimed then
    local r = (tonumber(f[5]) or 0) + 1
    redis.call('HSET', rec, 'reclaims', r)
    if r > max_reclaims then
      dead_letter(stream, msgid, jobid, task, 'poison: taken back from a stopped worker ' .. r .. ' times')
      return
    end
    local max_attempts = status == 'active' and spec_max_attempts(spec)
    if max_attempts and attempt > max_attempts then
      redis.call('HSET', rec, 'attempts', attempt - 1)
      dead_letter(stream, msgid, jobid, task, 'taken back from a stopped worker after its last attempt (' ..
        (attempt - 1) .. ' of max_attempts ' .. max_attempts .. '): not run again')
      return
    end
  end
  redis.call('HSET', rec, 'status', 'active', 'attempts', attempt, 'started_at', now_s, 'worker', consumer)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'started', 'job', jobid, 'task', task,
    'attempt', attempt, 'worker', consumer)
  out[#out + 1] = si
  out[#out + 1] = msgid
  out[#out + 1] = jobid
  out[#out + 1] = task
  out[#out + 1] = spec
  out[#out + 1] = attempt
  out[#out + 1] = f[8] or ''
end

local cursors = {}
if mode == 'given' or mode == 'taken' then
  for i = 12, #ARGV, 3 do
    consumed = consumed + 1
    start(tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], mode == 'taken')
  end
else
  local quotas, total = {}, 0
  for i = 1, n do
    quotas[i] = tonumber(ARGV[11 + i])
    total = total + quotas[i]
    cursors[i] = ARGV[11 + n + i]
  end
  local left = total
  if lease > 0 then
    for i = 1, n do
      if left <= 0 then break end
      local r = redis.call('XAUTOCLAIM', KEYS[3 + i], group, consumer, lease, cursors[i], 'COUNT', left)
      cursors[i] = r[1]
      for _, e in ipairs(r[2]) do
        -- A claimed id whose entry was deleted has no fields; it is not a job any more.
        if type(e) == 'table' and type(e[2]) == 'table' then
          consumed = consumed + 1
          start(i, e[1], field(e[2], 'j') or '', true)
          left = left - 1
        end
      end
    end
  end
  local function read(i, count)
    if count <= 0 then return 0 end
    local got = entries_of(redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count,
      'STREAMS', KEYS[3 + i], '>'))
    for _, e in ipairs(got) do start(i, e[1], field(e[2], 'j') or '', false) end
    consumed = consumed + #got
    return #got
  end
  for i = 1, n do
    if left <= 0 then break end
    left = left - read(i, math.min(quotas[i], left))
  end
  for i = 1, n do
    if left <= 0 then break end
    left = left - read(i, left)
  end
end
if n_dead > 0 then
  redis.call('HINCRBY', stats, 'dead', n_dead)
  age_out(dead, dead_ttl, now)
end
if n_expired > 0 then redis.call('HINCRBY', stats, 'expired', n_expired) end
if earliest ~= nil then redis.call('XADD', prefix .. K.wake, 'MAXLEN', '1', '*', 'due_at', int(earliest)) end
flush_task_counts(prefix, per_task)
flush_done(c)
return {cursors, out, n_dead + n_expired, 0, own, consumed}

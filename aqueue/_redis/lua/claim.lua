-- Claim jobs and mark them active, atomically, returning what a worker needs to run them.
-- KEYS: events, stats, dead, stream_1 .. stream_n (the priority levels, highest first, then the group stream)
-- ARGV: prefix, group, consumer, events_maxlen, dead_maxlen, dead_ttl_ms, max_reclaims, mode, lease_ms,
--   ok_ttl_ms, limits ('' or JSON: the rate limits of rate_slot in the prelude, and c = {[task] = concurrency
--   limit}, gc = per-group concurrency limit), ...
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
-- Concurrency limits: a job of a limited task starts only with one of its task's permits (a set of the job ids
-- holding one); with none free it is parked (its message dropped, the job still 'queued', never in a worker's
-- slot) until a permit comes back (free_permits in the prelude re-queues the oldest). A job keeps its permit while
-- its worker holds it, so a killed worker's permits come back with its jobs when the lease runs out.
-- Groups: reading the group stream first gives as many groups their turn as the read may start (see to_group in
-- the prelude); with gc, a group with gc jobs holding its permits sits out until one comes back.
-- Returns {cursors, jobs, dead-lettered count, paused 0|1, own, consumed, groups waiting 0|1 (absent when paused)}; jobs is flat: stream index, message id,
-- job id, task, spec, attempt, inputs (the JSON a workflow step receives from its parents, or ''); own is flat:
-- stream index, message id, job id; consumed counts the messages read or taken back, started or not (a batch of
-- stale messages starts nothing but is not an empty queue).
local events, stats, dead = KEYS[1], KEYS[2], KEYS[3]
local prefix, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local maxlen, dead_maxlen, dead_ttl = ARGV[4], ARGV[5], tonumber(ARGV[6])
local max_reclaims, mode, lease = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
local limits = nil
if ARGV[11] ~= '' then limits = cjson.decode(ARGV[11]) end
local n = #KEYS - 3  -- the last level is the group stream
local now = now_ms()
local task_limits = limits and limits.c
local group_limit = limits and limits.gc
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

-- The permits a job holds (record field 'hold') go back when it leaves without starting here.
local function let_go(jobid, f)
  if f and f[11] then free_permits(c, jobid, prefix .. K.job .. jobid, f[1], f[12]) end
end

-- A task permit for the job, or false: at its limit, the job is parked (see the header) and gives back the
-- permit of its group's turn. The set is checked once per call for ids no longer running (a record gone, say).
local pruned = {}
local function permit(stream, msgid, jobid, rec, task, group)
  local limit = task_limits and task_limits[task]
  if not limit then return true end
  local set = prefix .. K.permits_task .. task
  if redis.call('SISMEMBER', set, jobid) == 1 then return true end
  if redis.call('SCARD', set) >= limit and not pruned[task] then
    pruned[task] = true
    for _, id in ipairs(redis.call('SMEMBERS', set)) do
      if redis.call('HGET', prefix .. K.job .. id, 'status') ~= 'active' then redis.call('SREM', set, id) end
    end
  end
  if redis.call('SCARD', set) < limit then
    redis.call('SADD', set, jobid)
    return true
  end
  drop(stream, msgid)
  redis.call('HSET', rec, 'status', 'queued')
  redis.call('HDEL', rec, 'msg')
  redis.call('RPUSH', prefix .. K.parked .. task, jobid)
  if group then free_permits(c, jobid, rec, nil, group) end
  return false
end

local function dead_letter(stream, msgid, jobid, task, reason, f)
  let_go(jobid, f)
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
    if si == n then  -- a wake-up entry of the group stream: it has done its work
      drop(stream, msgid)
      return
    end
    dead_letter(stream, msgid, '', '', 'undecodable stream entry ' .. msgid .. ': no job id')
    return
  end
  local rec = prefix .. K.job .. jobid
  local f = redis.call('HMGET', rec, 'task', 'spec', 'status', 'attempts', 'reclaims', 'expires_at', 'rl', 'inputs',
    'cancel', 'worker', 'hold', 'group')
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
    if status ~= 'active' then let_go(jobid, f) end
    drop(stream, msgid)
    return
  end
  if f[9] then  -- cancelled while its worker was gone: do not start it again
    let_go(jobid, f)
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
    let_go(jobid, f)
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
  if not permit(stream, msgid, jobid, rec, task, f[12]) then return end
  if limits then
    local reserved = tonumber(f[7])
    if reserved and now + 5 >= reserved then
      redis.call('HDEL', rec, 'rl')  -- its reserved slot has come
    else
      local at = rate_slot(c, limits, task, f[12])
      if at > now then
        free_permits(c, jobid, rec, task, f[12])
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
      dead_letter(stream, msgid, jobid, task, 'poison: taken back from a stopped worker ' .. r .. ' times', f)
      return
    end
    local max_attempts = status == 'active' and spec_max_attempts(spec)
    if max_attempts and attempt > max_attempts then
      redis.call('HSET', rec, 'attempts', attempt - 1)
      dead_letter(stream, msgid, jobid, task, 'taken back from a stopped worker after its last attempt (' ..
        (attempt - 1) .. ' of max_attempts ' .. max_attempts .. '): not run again', f)
      return
    end
  end
  if task_limits and task_limits[task] then
    redis.call('HSET', rec, 'status', 'active', 'attempts', attempt, 'started_at', now_s, 'worker', consumer,
      'hold', '1')
  else
    redis.call('HSET', rec, 'status', 'active', 'attempts', attempt, 'started_at', now_s, 'worker', consumer)
  end
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
  -- Give groups their turns (the header): up to k of their jobs onto the group stream, one per group in turn.
  local ring, gstream = prefix .. K.groups, KEYS[3 + n]
  local function dispatch(k)
    local moved, taken, tries = 0, 0, 0
    while moved < k and tries < k + 100 do
      tries = tries + 1
      local top = redis.call('ZRANGE', ring, 0, 0)
      if #top == 0 then break end
      local g = top[1]
      local list = prefix .. K.group .. g
      local id = redis.call('LPOP', list)
      local full = false
      if id then
        taken = taken + 1
        local rec = prefix .. K.job .. id
        if redis.call('HGET', rec, 'status') == 'queued' then  -- else cancelled meanwhile: skipped
          if group_limit then
            local permits = prefix .. K.permits_group .. g
            redis.call('SADD', permits, id)
            redis.call('HSET', rec, 'hold', '1')
            full = redis.call('SCARD', permits) >= group_limit
          end
          redis.call('XADD', gstream, '*', 'j', id)
          moved = moved + 1
        end
      end
      if not id or full or redis.call('LLEN', list) == 0 then
        redis.call('ZREM', ring, g)
      else
        redis.call('ZADD', ring, redis.call('INCR', prefix .. K.group_turn), g)
      end
    end
    if taken > 0 then redis.call('DECRBY', prefix .. K.group_jobs, taken) end
  end
  -- A safety net at each take-back turn: jobs parked for a task whose permits are free (its limit raised, or a
  -- permit whose job no longer runs) go back to their streams.
  local function unpark_free()
    for task, limit in pairs(task_limits) do
      if redis.call('LLEN', prefix .. K.parked .. task) > 0 then
        local set = prefix .. K.permits_task .. task
        for _, id in ipairs(redis.call('SMEMBERS', set)) do
          if redis.call('HGET', prefix .. K.job .. id, 'status') ~= 'active' then redis.call('SREM', set, id) end
        end
        unpark(c, task, limit - redis.call('SCARD', set))
      end
    end
  end
  if lease > 0 and task_limits then unpark_free() end
  local function read(i, count)
    if count <= 0 then return 0 end
    if i == n then dispatch(count) end
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
return {cursors, out, n_dead + n_expired, 0, own, consumed, redis.call('EXISTS', prefix .. K.groups)}

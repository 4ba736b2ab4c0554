-- Shared helpers, prepended to every aqueue script when it is loaded.
-- Keys: a script names every key of the queue as prefix .. K.<name> (K.job .. id, K.scheduled, ...); loading
-- replaces each K.<name> with its suffix from aqueue/_redis/keys.py as a string literal. Never spell a suffix here.
-- Numbers go to Redis through int() so that large millisecond values never print in exponent form.
local function int(n) return string.format('%d', n) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Entries of a single-stream XREADGROUP reply. Redis nests {{name, entries}}; fakeredis answers {name, entries}.
local function entries_of(reply)
  if not reply or reply == false or #reply == 0 then return {} end
  if type(reply[1]) == 'table' then return reply[1][2] end
  return reply[2]
end

-- Value of one field in a flat {k1, v1, k2, v2, ...} reply.
local function field(fields, name)
  if type(fields) ~= 'table' then return nil end
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

-- Stream ids 'ms-seq' compared as numbers; id_next is the smallest id after one.
local function id_parts(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end

local function id_less(a, b)
  local am, as = id_parts(a)
  local bm, bs = id_parts(b)
  return am < bm or (am == bm and as < bs)
end

local function id_next(id)
  local ms, seq = id_parts(id)
  return int(ms) .. '-' .. int(seq + 1)
end

local TERMINAL = {succeeded = true, dead = true, cancelled = true, expired = true}

-- Per-task lifetime counters: a Lua table {[counter .. ':' .. task] = n} filled while a script runs, written with
-- one HINCRBY per distinct field at the end (a batch usually holds few tasks).
local function count_task(counts, counter, task)
  local per = counts[counter]
  if not per then
    per = {}
    counts[counter] = per
  end
  task = task or ''
  per[task] = (per[task] or 0) + 1
end

local function flush_task_counts(prefix, counts)
  for counter, per in pairs(counts) do
    for task, n in pairs(per) do redis.call('HINCRBY', prefix .. K.task_stats, counter .. ':' .. task, n) end
  end
end

local function event(prefix, maxlen, ...)
  redis.call('XADD', prefix .. K.events, 'MAXLEN', '~', maxlen, '*', ...)
end

-- Groups (fair turns). A grouped job waits in its group's list; the groups with waiting jobs form a sorted set
-- scored by turn, and the claim script serves the lowest (the group served longest ago, or the newest) and gives
-- it the next turn, so every group with work gets one job per round however many it has waiting. ``front`` puts a
-- job back at the head of its group (it had its turn and must wait for a permit or a rate slot again). A wake-up
-- entry (no job) on the group stream wakes a worker blocked on an empty queue when the first group fills.
local function join_round(c, group)
  local ring = c.prefix .. K.groups
  if not redis.call('ZSCORE', ring, group) then
    redis.call('ZADD', ring, redis.call('INCR', c.prefix .. K.group_turn), group)
    if redis.call('ZCARD', ring) == 1 then redis.call('XADD', c.prefix .. K.group_ready, '*', 'w', '1') end
  end
end

local function to_group(c, id, group, front)
  redis.call(front and 'LPUSH' or 'RPUSH', c.prefix .. K.group .. group, id)
  redis.call('INCR', c.prefix .. K.group_jobs)
  join_round(c, group)
end

-- Put a job where workers take it: its group's list, or its priority's stream (returning the entry id).
local function to_ready(c, id, prio, group, front)
  if group and group ~= '' then
    to_group(c, id, group, front)
    return nil
  end
  return redis.call('XADD', c.prefix .. K.stream .. prio, '*', 'j', id)
end

-- Put up to n jobs parked for a permit of the task back where workers take them (cancelled ones are skipped).
local function unpark(c, task, n)
  local parked = c.prefix .. K.parked .. task
  local moved = 0
  while moved < n do
    local pid = redis.call('LPOP', parked)
    if not pid then return end
    local prec = c.prefix .. K.job .. pid
    local pf = redis.call('HMGET', prec, 'status', 'priority', 'group')
    if pf[1] == 'queued' then
      local msg = to_ready(c, pid, pf[2], pf[3], true)
      if msg then redis.call('HSET', prec, 'msg', msg) end
      moved = moved + 1
    end
  end
end

-- A job leaves 'active' (or its group's turn) holding permits (record field 'hold'): give them back. A task permit
-- wakes the oldest job parked for one (back to its stream, or the head of its group); a group permit puts a group
-- that stopped at its limit back in the round. ``task``/``group`` come from the record.
local function free_permits(c, id, rec, task, group)
  redis.call('HDEL', rec, 'hold')
  if task and redis.call('SREM', c.prefix .. K.permits_task .. task, id) == 1 then unpark(c, task, 1) end
  if group and group ~= '' and redis.call('SREM', c.prefix .. K.permits_group .. group, id) == 1
      and redis.call('LLEN', c.prefix .. K.group .. group) > 0 then
    join_round(c, group)
  end
end

-- Ready a job: on its stream (or its group) now, or in the scheduled set for delay_ms (waking schedulers if
-- earlier).
local function make_ready(c, id, rec, prio, task, delay_ms, group)
  if delay_ms and delay_ms > 0 then
    local due = c.now + delay_ms
    redis.call('HSET', rec, 'status', 'scheduled', 'due_at', int(due))
    redis.call('ZADD', c.prefix .. K.scheduled, int(due), id)
    redis.call('XADD', c.prefix .. K.wake, 'MAXLEN', '1', '*', 'due_at', int(due))
    event(c.prefix, c.maxlen, 'type', 'scheduled', 'job', id, 'task', task, 'due_at', int(due))
  else
    -- 'msg' names the job's stream entry, so that cancelling the job while it waits deletes the entry
    local msg = to_ready(c, id, prio, group)
    redis.call('HSET', rec, 'status', 'queued')
    if msg then redis.call('HSET', rec, 'msg', msg) end
    event(c.prefix, c.maxlen, 'type', 'queued', 'job', id, 'task', task)
  end
end

-- After a job reached a terminal status (its record already says so): index it for cleanup, release its dedup
-- key, count its workflow down, and resolve the workflow steps that wait on it. Steps cancelled here are handled
-- the same way in turn (a worklist, not recursion). ``c`` = {prefix, maxlen, now, ok_ttl}.
-- How a step ended, for its dependants: 'ok' (succeeded), 'fail' (dead, expired, cancelled), 'skip' (a failure
-- handler not needed because nothing it watched failed: its own dependants are skipped, never alerted).
-- ``known``, when given, holds the record's fields FINISH_FIELDS already read by the caller (saves a read), from
-- index ``at`` on. A job with no dedup key and no workflow (the common case) is only indexed: no tables made.
local FINISH_FIELDS = {'dedup', 'dedup_hold', 'wf', 'next', 'task', 'error'}
local function finish(c, jobid, status, known, at)
  if known then
    if not known[at] and not known[at + 2] and not known[at + 3] then
      c.done = c.done or {}
      local list = c.done[status]
      if not list then
        list = {}
        c.done[status] = list
      end
      list[#list + 1] = jobid
      return
    end
    local f = {}
    for k = 1, 6 do f[k] = known[at + k - 1] end
    known = f
  end
  local work = {{jobid, status, status == 'succeeded' and 'ok' or 'fail'}}
  local i = 1
  while i <= #work do
    local id, st, how = work[i][1], work[i][2], work[i][3]
    i = i + 1
    local rec = c.prefix .. K.job .. id
    local f = known
    known = nil
    if f == nil then f = redis.call('HMGET', rec, unpack(FINISH_FIELDS)) end
    c.done = c.done or {}
    c.done[st] = c.done[st] or {}
    table.insert(c.done[st], id)
    if f[1] and f[2] == '1' then
      local dk = c.prefix .. K.dedup .. f[1]
      if redis.call('GET', dk) == id then redis.call('DEL', dk) end
    end
    if f[3] then
      local wf = c.prefix .. K.workflow .. f[3]
      if redis.call('HINCRBY', wf, 'left', -1) <= 0 then
        redis.call('HSET', wf, 'finished_at', int(c.now))
        redis.call('PEXPIRE', wf, c.ok_ttl)
        event(c.prefix, c.maxlen, 'type', 'workflow_finished', 'workflow', f[3], 'job', id, 'task', f[5] or '')
      end
    end
    if f[4] then
      for child, mode in string.gmatch(f[4], '([^,:]+):(%a)') do
        local crec = c.prefix .. K.job .. child
        local cf = redis.call('HMGET', crec, 'status', 'priority', 'task', 'delay', 'pass', 'parents', 'group')
        if cf[1] == 'waiting' then
          local fire, skip_reason = false, nil
          if mode == 's' then
            if how == 'ok' then
              fire = redis.call('HINCRBY', crec, 'need', -1) <= 0
            elseif how == 'skip' then
              skip_reason = 'skipped: step ' .. id .. ' was skipped'
            else
              skip_reason = 'cancelled: step ' .. id .. ' ended ' .. st
            end
          else  -- 'f': a failure handler of this step
            if how == 'fail' then
              fire = true
            elseif redis.call('HINCRBY', crec, 'watch', -1) <= 0 then
              skip_reason = 'skipped: no step it handles failed'
            end
          end
          if fire then
            if cf[5] == '1' or cf[5] == 'n' then
              local inputs
              if mode == 'f' then
                inputs = cjson.encode({job = id, task = f[5] or '', status = st, error = f[6] or ''})
              else
                local parts = {}
                for p in string.gmatch(cf[6] or '', '[^,]+') do
                  parts[#parts + 1] = redis.call('HGET', c.prefix .. K.job .. p, 'result') or 'null'
                end
                if cf[5] == '1' then inputs = parts[1] or 'null' else inputs = '[' .. table.concat(parts, ',') .. ']' end
              end
              redis.call('HSET', crec, 'inputs', inputs)
            end
            make_ready(c, child, crec, cf[2], cf[3] or '', tonumber(cf[4]) or 0, cf[7])
          elseif skip_reason then
            redis.call('HSET', crec, 'status', 'cancelled', 'error', skip_reason, 'finished_at', int(c.now))
            redis.call('PEXPIRE', crec, c.ok_ttl)
            event(c.prefix, c.maxlen, 'type', 'cancelled', 'job', child, 'task', cf[3] or '', 'reason', skip_reason)
            redis.call('HINCRBY', c.prefix .. K.stats, 'cancelled', 1)
            redis.call('HINCRBY', c.prefix .. K.task_stats, 'cancelled:' .. (cf[3] or ''), 1)
            work[#work + 1] = {child, 'cancelled', (mode == 'f' or how == 'skip') and 'skip' or 'fail'}
          end
        end
      end
    end
  end
end

-- Write the cleanup index entries of the jobs finish() saw in this script call: one entry per status, its ids
-- comma-joined, in the stream done:<status> (entry ids are finish times), trimmed to the retention as it grows.
-- Keep a stream of finished jobs (a done index, the dead-letter stream) only as long as the records it points at:
-- entries older than ttl ms go, and the key itself expires ttl ms after its newest entry, so an idle queue's
-- indexes vanish with its last records instead of lingering until the next job finishes.
local function age_out(key, ttl, now)
  ttl = tonumber(ttl)
  if not ttl or ttl <= 0 then return end
  redis.call('XTRIM', key, 'MINID', int(now - ttl))
  redis.call('PEXPIRE', key, int(ttl))
end

local function flush_done(c)
  if not c.done then return end
  for st, ids in pairs(c.done) do
    if #ids > 0 then  -- none left when retain() took every one out
      local key = c.prefix .. K.done .. st
      redis.call('XADD', key, '*', 'ids', table.concat(ids, ','))
      age_out(key, st == 'dead' and c.dead_ttl or c.ok_ttl, c.now)
    end
  end
  c.done = nil
end

-- A succeeded job's record kept as its 'keep' field says (ms; -1 forever; 0 not at all), instead of ok_ttl ms.
-- Only jobs enqueued with keep_result have the field. A record kept forever or deleted is taken out of the cleanup
-- index finish() just put it in (its last entry there): the age-out never touches it, nor does tasks.cleanup().
local function retain(c, rec, jobid, keep, status)
  local list = c.done and c.done[status]
  if list and list[#list] == jobid then list[#list] = nil end
  if keep == '0' then
    redis.call('DEL', rec)
  elseif keep == '-1' then
    redis.call('PERSIST', rec)
  else
    redis.call('PEXPIRE', rec, keep)
    if list then list[#list + 1] = jobid end
  end
end

-- Write one job (the enqueue and cron scripts). ``job`` = {id, task, priority, delay_ms, spec, options or false};
-- options (all optional): id 1 when the id is the caller's (a job whose record exists is a duplicate), kr result
-- retention ms (-1: forever; see retain()), dk dedup key, dt dedup ttl ms (0: held until the job finishes),
-- dm 'drop'|'replace', x ttl ms, wf workflow id, name step name, after {parent ids} (success dependencies), on {step ids} (this step
-- handles their failure), pass '1'|'n' (prepend the parent's result / the parents' results as first argument), g
-- group (the job waits in its group's list for the group's turn instead of on a stream).
-- Returns the id of an existing job when this one was a duplicate, else nil.
local function enqueue_one(c, job, per_task)
  local id, task, prio, delay, spec, o = job[1], job[2], job[3], job[4], job[5], job[6]
  local rec = c.prefix .. K.job .. id
  if type(o) ~= 'table' then o = nil end
  if o and o.id and redis.call('EXISTS', rec) == 1 then
    event(c.prefix, c.maxlen, 'type', 'duplicate', 'job', id, 'task', task, 'mode', 'id')
    return id
  end
  if o and o.dk then
    local dk = c.prefix .. K.dedup .. o.dk
    local existing = redis.call('GET', dk)
    if existing then
      local erec = c.prefix .. K.job .. existing
      local est = redis.call('HGET', erec, 'status')
      if est and o.dm == 'replace' and (est == 'queued' or est == 'scheduled') then
        local eprio = redis.call('HGET', erec, 'priority')
        redis.call('HSET', erec, 'spec', spec, 'priority', prio)
        if delay > 0 then
          local due = c.now + delay
          -- a queued job's stream entry is now stale: claim drops it because the status is not 'queued'
          redis.call('HSET', erec, 'status', 'scheduled', 'due_at', int(due))
          redis.call('ZADD', c.prefix .. K.scheduled, int(due), existing)
          redis.call('XADD', c.prefix .. K.wake, 'MAXLEN', '1', '*', 'due_at', int(due))
        elseif est == 'scheduled' then
          redis.call('ZREM', c.prefix .. K.scheduled, existing)
          local msg = to_ready(c, existing, prio, redis.call('HGET', erec, 'group'))
          redis.call('HSET', erec, 'status', 'queued')
          if msg then redis.call('HSET', erec, 'msg', msg) end
          redis.call('HDEL', erec, 'due_at')
        elseif eprio ~= prio and not redis.call('HGET', erec, 'group') then
          -- queued at another priority: an entry on the new level's stream too; whichever is claimed first runs
          -- the job, and claim drops the other (the status is no longer 'queued' by then)
          redis.call('XADD', c.prefix .. K.stream .. prio, '*', 'j', existing)
        end
        event(c.prefix, c.maxlen, 'type', 'duplicate', 'job', existing, 'task', task, 'key', o.dk, 'mode', 'replace')
        return existing
      elseif est and o.dm ~= 'replace' then
        event(c.prefix, c.maxlen, 'type', 'duplicate', 'job', existing, 'task', task, 'key', o.dk, 'mode', 'drop')
        return existing
      end
      -- no record any more, or 'replace' of a job that already started: a new job takes the key
    end
    if o.dt and o.dt > 0 then
      redis.call('SET', dk, id, 'PX', int(o.dt))
    else
      redis.call('SET', dk, id)
    end
    redis.call('HSET', rec, 'dedup', o.dk, 'dedup_hold', (o.dt and o.dt > 0) and '0' or '1')
  end
  local now_s = int(c.now)
  local group = o and o.g
  if group then redis.call('HSET', rec, 'group', group) end
  if o and o.kr then redis.call('HSET', rec, 'keep', int(o.kr)) end
  if o and o.x then redis.call('HSET', rec, 'expires_at', int(c.now + delay + o.x)) end
  if o and o.wf then
    redis.call('HSET', rec, 'wf', o.wf, 'step', o.name or id)
    local need, watch = 0, 0
    if o.after then
      for _, p in ipairs(o.after) do
        redis.call('HSET', c.prefix .. K.job .. p, 'next',
          (redis.call('HGET', c.prefix .. K.job .. p, 'next') or '') .. id .. ':s,')
        need = need + 1
      end
      redis.call('HSET', rec, 'parents', table.concat(o.after, ','))
    end
    if o.on then
      for _, p in ipairs(o.on) do
        redis.call('HSET', c.prefix .. K.job .. p, 'next',
          (redis.call('HGET', c.prefix .. K.job .. p, 'next') or '') .. id .. ':f,')
        watch = watch + 1
      end
    end
    if o.pass then redis.call('HSET', rec, 'pass', o.pass) end
    if need + watch > 0 then
      redis.call('HSET', rec, 'task', task, 'spec', spec, 'priority', prio, 'status', 'waiting',
        'attempts', 0, 'enqueued_at', now_s, 'need', need, 'watch', watch, 'delay', delay)
      event(c.prefix, c.maxlen, 'type', 'waiting', 'job', id, 'task', task, 'workflow', o.wf)
      count_task(per_task, 'enqueued', task)
      return nil
    end
  end
  if delay > 0 then
    local due = c.now + delay
    redis.call('HSET', rec, 'task', task, 'spec', spec, 'priority', prio, 'status', 'scheduled',
      'attempts', 0, 'enqueued_at', now_s, 'due_at', int(due))
    redis.call('ZADD', c.prefix .. K.scheduled, int(due), id)
    event(c.prefix, c.maxlen, 'type', 'scheduled', 'job', id, 'task', task, 'due_at', int(due))
    if c.earliest == nil or due < c.earliest then c.earliest = due end
  elseif group then
    redis.call('HSET', rec, 'task', task, 'spec', spec, 'priority', prio, 'status', 'queued',
      'attempts', 0, 'enqueued_at', now_s)
    to_group(c, id, group)
    event(c.prefix, c.maxlen, 'type', 'enqueued', 'job', id, 'task', task, 'priority', prio, 'group', group)
  else
    -- 'msg' names the job's stream entry, so that cancelling the job while it waits deletes the entry
    local msg = redis.call('XADD', c.prefix .. K.stream .. prio, '*', 'j', id)
    redis.call('HSET', rec, 'task', task, 'spec', spec, 'priority', prio, 'status', 'queued',
      'attempts', 0, 'enqueued_at', now_s, 'msg', msg)
    event(c.prefix, c.maxlen, 'type', 'enqueued', 'job', id, 'task', task, 'priority', prio)
  end
  count_task(per_task, 'enqueued', task)
  return nil
end

-- Global rate limits (GCRA with reservations). ``limits`` = {q = {interval_ms, tolerance_ms} or nil,
-- t = {[task] = {interval_ms, tolerance_ms}}, g = {interval_ms, tolerance_ms} of each group (a grouped job) or nil}. Returns the time (ms) the job may start: now, or a reserved slot
-- in the future that it is scheduled for (so limited jobs wait in the scheduled set, not in a worker's slot).
local function rate_slot(c, limits, task, group)
  local ls = {}
  if limits.q then ls[#ls + 1] = {c.prefix .. K.rate_queue, limits.q} end
  local tl = limits.t and limits.t[task]
  if tl then ls[#ls + 1] = {c.prefix .. K.rate_task .. task, tl} end
  if limits.g and group then ls[#ls + 1] = {c.prefix .. K.rate_group .. group, limits.g} end
  if #ls == 0 then return c.now end
  local at = c.now
  local tats = {}
  for k, l in ipairs(ls) do
    local tat = math.max(tonumber(redis.call('GET', l[1])) or c.now, c.now)
    tats[k] = tat
    at = math.max(at, tat - l[2][2])
  end
  for k, l in ipairs(ls) do
    local nxt = math.max(tats[k], at) + l[2][1]
    redis.call('SET', l[1], string.format('%.3f', nxt), 'PX', int(nxt - c.now + 1000))
  end
  return at
end

-- Enqueue a batch of jobs atomically: record hash, ready stream (or scheduled set, or 'waiting' for a workflow
-- step with parents), event, counters (queue and per task). Dedup keys, TTLs and workflow links are applied here.
-- KEYS: events, scheduled, stats, wake
-- ARGV: prefix, events_maxlen, jobs: one JSON array of [id, task, priority, delay_ms, spec, options or 0]
--   (see enqueue_one in the prelude), workflow: '' or JSON [id, steps JSON, step count, name]
-- Returns the duplicates, flat: index in the batch (1-based), id of the existing job.
-- A call sent again writes nothing: redis-py resends a whole pipeline whose connection dropped, calls that ran
-- included. Job ids aqueue makes are fresh, so a record of one of those means this call ran; it answers as it
-- did then (the duplicates from their dedup keys; a caller-chosen id's job, which exists now, as a duplicate).
-- A caller-chosen id (option id) tells nothing: its record may be an earlier job's. When every job of the call
-- has one, the call runs again and finds them all as duplicates, which is what it writes the second time.
local stats, wake = KEYS[3], KEYS[4]
local c = {prefix = ARGV[1], maxlen = ARGV[2], now = now_ms()}
local per_task = {}
local n = 0
local dups = {}
local jobs = cjson.decode(ARGV[3])

-- One EXISTS in the common case: a job without a dedup key always gets its record, so the first such job tells.
local function ran_before()
  for _, job in ipairs(jobs) do
    local o = type(job[6]) == 'table' and job[6] or nil
    if not (o and o.id) then
      if redis.call('EXISTS', c.prefix .. K.job .. job[1]) == 1 then return true end
      if not (o and o.dk) then return false end
    end
  end
  return false
end

if ran_before() then
  for i, job in ipairs(jobs) do
    local o = job[6]
    if type(o) == 'table' and o.id then
      dups[#dups + 1] = i
      dups[#dups + 1] = job[1]
    elseif type(o) == 'table' and o.dk and redis.call('EXISTS', c.prefix .. K.job .. job[1]) == 0 then
      local holder = redis.call('GET', c.prefix .. K.dedup .. o.dk)
      if holder then
        dups[#dups + 1] = i
        dups[#dups + 1] = holder
      end
    end
  end
  return dups
end
if ARGV[4] and ARGV[4] ~= '' then
  local wf = cjson.decode(ARGV[4])
  redis.call('HSET', c.prefix .. K.workflow .. wf[1], 'steps', wf[2], 'left', wf[3], 'name', wf[4],
    'created_at', int(c.now))
  event(c.prefix, c.maxlen, 'type', 'workflow_started', 'workflow', wf[1], 'name', wf[4])
end
for i, job in ipairs(jobs) do
  local existing = enqueue_one(c, job, per_task)
  if existing then
    dups[#dups + 1] = i
    dups[#dups + 1] = existing
  else
    n = n + 1
  end
end
if n > 0 then redis.call('HINCRBY', stats, 'enqueued', n) end
flush_task_counts(c.prefix, per_task)
if c.earliest ~= nil then
  redis.call('XADD', wake, 'MAXLEN', '1', '*', 'due_at', int(c.earliest))
end
return dups

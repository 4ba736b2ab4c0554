-- Enqueue a batch of jobs atomically: record hash, ready stream (or scheduled set, or 'waiting' for a workflow
-- step with parents), event, counters (queue and per task). Dedup keys, TTLs and workflow links are applied here.
-- KEYS: events, scheduled, stats, wake
-- ARGV: prefix, events_maxlen, jobs: one JSON array of [id, task, priority, delay_ms, spec, options or 0]
--   (see enqueue_one in the prelude), workflow: '' or JSON [id, steps JSON, step count, name]
-- Returns the duplicates, flat: index in the batch (1-based), id of the existing job.
local stats, wake = KEYS[3], KEYS[4]
local c = {prefix = ARGV[1], maxlen = ARGV[2], now = now_ms()}
local per_task = {}
local n = 0
local dups = {}
if ARGV[4] and ARGV[4] ~= '' then
  local wf = cjson.decode(ARGV[4])
  redis.call('HSET', c.prefix .. 'wf:' .. wf[1], 'steps', wf[2], 'left', wf[3], 'name', wf[4],
    'created_at', int(c.now))
  event(c.prefix, c.maxlen, 'type', 'workflow_started', 'workflow', wf[1], 'name', wf[4])
end
for i, job in ipairs(cjson.decode(ARGV[3])) do
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

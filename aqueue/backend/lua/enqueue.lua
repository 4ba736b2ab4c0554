-- Enqueue a batch of jobs atomically: record hash, ready stream (or scheduled set), event, counters (queue and
-- per task).
-- KEYS: events, scheduled, stats, wake
-- ARGV: prefix, events_maxlen, jobs: one JSON array of [id, task, priority, delay_ms, spec]
local events, scheduled, stats, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, maxlen = ARGV[1], ARGV[2]
local now = now_ms()
local now_s = int(now)
local earliest = nil
local n = 0
local per_task = {}
for _, job in ipairs(cjson.decode(ARGV[3])) do
  local id, task, prio, delay, spec = job[1], job[2], job[3], job[4], job[5]
  local rec = prefix .. 'job:' .. id
  if delay > 0 then
    local due = now + delay
    redis.call('HSET', rec, 'task', task, 'spec', spec, 'priority', prio, 'status', 'scheduled',
      'attempts', 0, 'enqueued_at', now_s, 'due_at', int(due))
    redis.call('ZADD', scheduled, int(due), id)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'scheduled', 'job', id, 'task', task,
      'due_at', int(due))
    if earliest == nil or due < earliest then earliest = due end
  else
    redis.call('HSET', rec, 'task', task, 'spec', spec, 'priority', prio, 'status', 'queued',
      'attempts', 0, 'enqueued_at', now_s)
    redis.call('XADD', prefix .. 'stream:' .. prio, '*', 'j', id)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'enqueued', 'job', id, 'task', task,
      'priority', prio)
  end
  n = n + 1
  count_task(per_task, 'enqueued', task)
end
redis.call('HINCRBY', stats, 'enqueued', n)
flush_task_counts(prefix, per_task)
if earliest ~= nil then
  redis.call('XADD', wake, 'MAXLEN', '1', '*', 'due_at', int(earliest))
end
return n

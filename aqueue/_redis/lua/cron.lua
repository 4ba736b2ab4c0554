-- Fire one tick of a periodic job, exactly once however many workers race for it: the tick is recorded in the
-- 'cron' hash and a job is enqueued only if no later-or-equal tick was recorded. With an empty job, only the
-- schedule and next run are recorded (a worker registering its cron jobs at start).
-- A startup run (a window given) is enqueued instead unless one was enqueued less than the window ago on the Redis
-- clock, so workers starting together enqueue one; it leaves the recorded tick alone.
-- KEYS: events, stats
-- ARGV: prefix, events_maxlen, name, tick ms, next ms, description, task, job JSON (as for enqueue) or '',
--       startup window ms (a startup run) or nothing (a tick)
-- Returns 1 if this call enqueued the job, else 0.
local prefix, maxlen, name = ARGV[1], ARGV[2], ARGV[3]
local tick, nxt = tonumber(ARGV[4]), tonumber(ARGV[5])
local window = tonumber(ARGV[9])
local cron = prefix .. K.cron
local c = {prefix = prefix, maxlen = maxlen, now = now_ms()}
local known = tonumber(redis.call('HGET', cron, name .. ':next')) or 0
if nxt > known then redis.call('HSET', cron, name .. ':next', int(nxt)) end
redis.call('HSET', cron, name .. ':schedule', ARGV[6], name .. ':task', ARGV[7])
if ARGV[8] == '' then return 0 end
local mark
if window then
  local started = tonumber(redis.call('HGET', cron, name .. ':startup')) or 0
  if started > 0 and c.now - started < window then return 0 end
  tick, mark = c.now, 'startup'
else
  local last = tonumber(redis.call('HGET', cron, name .. ':last')) or 0
  if tick <= last then return 0 end
  mark = 'last'
end
local job = cjson.decode(ARGV[8])
local per_task = {}
redis.call('HSET', cron, name .. ':' .. mark, int(tick), name .. ':job', job[1])
enqueue_one(c, job, per_task)
redis.call('HINCRBY', KEYS[2], 'enqueued', 1)
flush_task_counts(prefix, per_task)
if c.earliest ~= nil then redis.call('XADD', prefix .. K.wake, 'MAXLEN', '1', '*', 'due_at', int(c.earliest)) end
if window then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'type', 'cron', 'name', name, 'job', job[1],
    'task', ARGV[7], 'tick', int(tick), 'startup', '1')
else
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'type', 'cron', 'name', name, 'job', job[1],
    'task', ARGV[7], 'tick', int(tick))
end
return 1

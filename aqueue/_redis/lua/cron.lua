-- Fire one tick of a periodic job, exactly once however many workers race for it: the tick is recorded in the
-- 'cron' hash and a job is enqueued only if no later-or-equal tick was recorded. With an empty job, only the
-- schedule and next run are recorded (a worker registering its cron jobs at start).
-- KEYS: events, stats
-- ARGV: prefix, events_maxlen, name, tick ms, next ms, description, task, job JSON (as for enqueue) or ''
-- Returns 1 if this call enqueued the tick's job, else 0.
local prefix, maxlen, name = ARGV[1], ARGV[2], ARGV[3]
local tick, nxt = tonumber(ARGV[4]), tonumber(ARGV[5])
local cron = prefix .. K.cron
local c = {prefix = prefix, maxlen = maxlen, now = now_ms()}
local known = tonumber(redis.call('HGET', cron, name .. ':next')) or 0
if nxt > known then redis.call('HSET', cron, name .. ':next', int(nxt)) end
redis.call('HSET', cron, name .. ':schedule', ARGV[6], name .. ':task', ARGV[7])
if ARGV[8] == '' then return 0 end
local last = tonumber(redis.call('HGET', cron, name .. ':last')) or 0
if tick <= last then return 0 end
local job = cjson.decode(ARGV[8])
local per_task = {}
redis.call('HSET', cron, name .. ':last', int(tick), name .. ':job', job[1])
enqueue_one(c, job, per_task)
redis.call('HINCRBY', KEYS[2], 'enqueued', 1)
flush_task_counts(prefix, per_task)
if c.earliest ~= nil then redis.call('XADD', prefix .. K.wake, 'MAXLEN', '1', '*', 'due_at', int(c.earliest)) end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'type', 'cron', 'name', name, 'job', job[1],
  'task', ARGV[7], 'tick', int(tick))
return 1

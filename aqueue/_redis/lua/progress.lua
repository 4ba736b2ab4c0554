-- Record a running job's progress and emit a 'progress' event; ignored unless the job is active.
-- KEYS: events
-- ARGV: prefix, events_maxlen, job id, value, message
-- Returns 1 if recorded, 0 if the job is not running.
local rec = ARGV[1] .. K.job .. ARGV[3]
local f = redis.call('HMGET', rec, 'status', 'task')
if f[1] ~= 'active' then return 0 end
redis.call('HSET', rec, 'progress', ARGV[4], 'progress_message', ARGV[5])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'type', 'progress', 'job', ARGV[3], 'task', f[2],
  'progress', ARGV[4], 'message', ARGV[5])
return 1

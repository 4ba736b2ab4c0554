-- Put dead or failed jobs back on their ready streams (the web API's retry and dead-letter reprocess).
-- Each job starts afresh: attempts and reclaims reset, error, result and expiry cleared; a failed job waiting for
-- its backoff leaves the scheduled set, a dead job's dead-letter entries (the ids given) are deleted.
-- KEYS: events, scheduled, dead, stats
-- ARGV: prefix, events_maxlen, source (who asked: 'retry' or 'reprocess'),
--   jobs: one JSON array of [job id, dead-letter entry ids of that job...]
-- Returns {requeued job ids, skipped: flat job id, reason pairs}.
local events, scheduled, dead, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, maxlen, source = ARGV[1], ARGV[2], ARGV[3]
local requeued, skipped = {}, {}
for _, item in ipairs(cjson.decode(ARGV[4])) do
  local jobid = item[1]
  local rec = prefix .. K.job .. jobid
  local f = redis.call('HMGET', rec, 'task', 'status', 'priority')
  local task, status, prio = f[1], f[2], f[3]
  if not task or not prio then
    skipped[#skipped + 1] = jobid
    skipped[#skipped + 1] = 'no record (never existed, or its retention expired)'
  elseif status ~= 'dead' and status ~= 'failed' then
    skipped[#skipped + 1] = jobid
    skipped[#skipped + 1] = 'job is ' .. tostring(status) .. '; only dead or failed jobs can be retried'
  else
    redis.call('ZREM', scheduled, jobid)
    redis.call('HDEL', rec, 'error', 'traceback', 'result', 'finished_at', 'started_at', 'due_at', 'worker', 'cancel',
      'rl', 'progress', 'progress_message', 'expires_at')
    redis.call('HSET', rec, 'status', 'queued', 'attempts', 0, 'reclaims', 0)
    redis.call('PERSIST', rec)  -- a dead record was set to expire; a queued one must not
    redis.call('XADD', prefix .. K.stream .. prio, '*', 'j', jobid)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'requeued', 'job', jobid, 'task', task,
      'priority', prio, 'from', status, 'by', source)
    for i = 2, #item do redis.call('XDEL', dead, item[i]) end
    requeued[#requeued + 1] = jobid
  end
end
if #requeued > 0 then redis.call('HINCRBY', stats, 'reprocessed', #requeued) end
return {requeued, skipped}

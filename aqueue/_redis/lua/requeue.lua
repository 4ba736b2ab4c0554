-- Put finished or failed jobs back on their ready streams (retry: one job; the dead-letter reprocess: many).
-- Each job starts afresh under the same id, with its spec (arguments, options, headers) as it was: attempts and
-- reclaims reset; error, traceback, result, progress, cancel mark and ttl deadline cleared (its logs kept, as
-- across attempts); a failed job waiting for its backoff leaves the scheduled set, a dead job's dead-letter
-- entries (the ids given) are deleted. A dedup key the job held, released when it finished, is not taken again.
-- A workflow step that was cancelled or expired is refused: its ending already resolved the steps after it.
-- KEYS: events, scheduled, dead, stats
-- ARGV: prefix, events_maxlen, source (who asked: 'retry' or 'reprocess'),
--   jobs: one JSON array of [job id, dead-letter entry ids of that job...],
--   statuses this call may requeue, comma-joined (e.g. 'dead,failed')
-- Returns {requeued job ids, skipped: flat job id, reason pairs}.
local events, scheduled, dead, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, maxlen, source = ARGV[1], ARGV[2], ARGV[3]
local allowed, names = {}, {}
for st in string.gmatch(ARGV[5], '[^,]+') do
  allowed[st] = true
  names[#names + 1] = st
end
local only = names[#names]
if #names > 1 then only = table.concat(names, ', ', 1, #names - 1) .. ' or ' .. names[#names] end
local requeued, skipped = {}, {}
local function skip(jobid, why)
  skipped[#skipped + 1] = jobid
  skipped[#skipped + 1] = why
end
for _, item in ipairs(cjson.decode(ARGV[4])) do
  local jobid = item[1]
  local rec = prefix .. K.job .. jobid
  local f = redis.call('HMGET', rec, 'task', 'status', 'priority', 'wf', 'group')
  local task, status, prio, wf = f[1], f[2], f[3], f[4]
  if not task or not prio then
    skip(jobid, 'no record (never existed, or its retention expired)')
  elseif not allowed[status] then
    skip(jobid, 'job is ' .. tostring(status) .. '; only ' .. only .. ' jobs can be retried')
  elseif wf and (status == 'cancelled' or status == 'expired') then
    skip(jobid, 'job is a ' .. status .. ' step of workflow ' .. wf .. ', which already went on without it')
  else
    redis.call('ZREM', scheduled, jobid)
    redis.call('HDEL', rec, 'error', 'traceback', 'result', 'finished_at', 'started_at', 'due_at', 'worker', 'cancel',
      'rl', 'progress', 'progress_message', 'expires_at')
    local msg = to_ready({prefix = prefix}, jobid, prio, f[5])
    -- 'msg' names the new entry, so that cancelling the job while it waits deletes it (see cancel.lua)
    redis.call('HSET', rec, 'status', 'queued', 'attempts', 0, 'reclaims', 0)
    if msg then redis.call('HSET', rec, 'msg', msg) end
    redis.call('PERSIST', rec)  -- a finished record was set to expire; a queued one must not
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'requeued', 'job', jobid, 'task', task,
      'priority', prio, 'from', status, 'by', source)
    for i = 2, #item do redis.call('XDEL', dead, item[i]) end
    requeued[#requeued + 1] = jobid
  end
end
if #requeued > 0 then redis.call('HINCRBY', stats, 'reprocessed', #requeued) end
return {requeued, skipped}

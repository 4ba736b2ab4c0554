-- Move due jobs from the scheduled set to their ready streams (a grouped job: to its group).
-- KEYS: scheduled, events, wake
-- ARGV: prefix, limit, events_maxlen, ok_ttl_ms
-- A job whose TTL passed before it was first due is expired here instead.
-- Returns {promoted, next due ms or -1, now ms, id of the latest wake entry or '0-0'}.
local scheduled, events, wake = KEYS[1], KEYS[2], KEYS[3]
local prefix, limit, maxlen = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local c = {prefix = prefix, maxlen = maxlen, now = now, ok_ttl = ARGV[4]}
local due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', int(now), 'LIMIT', 0, limit)
local n = 0
for _, id in ipairs(due) do
  local rec = prefix .. K.job .. id
  local f = redis.call('HMGET', rec, 'priority', 'status', 'task', 'expires_at', 'attempts', 'group', 'rl')
  local expires = tonumber(f[4])
  if f[2] == 'scheduled' and expires and now > expires and (tonumber(f[5]) or 0) == 0 then
    redis.call('HSET', rec, 'status', 'expired', 'error', 'expired: not started within its ttl',
      'finished_at', int(now))
    redis.call('PEXPIRE', rec, c.ok_ttl)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'expired', 'job', id, 'task', f[3])
    redis.call('HINCRBY', prefix .. K.stats, 'expired', 1)
    redis.call('HINCRBY', prefix .. K.task_stats, 'expired:' .. (f[3] or ''), 1)
    finish(c, id, 'expired')
  elseif f[1] and (f[2] == 'scheduled' or f[2] == 'failed') then
    -- a grouped job goes back to its group: at the head when it waits for its reserved rate slot (it had its turn)
    local msg = to_ready(c, id, f[1], f[6], f[7] ~= false)
    redis.call('HSET', rec, 'status', 'queued')
    if msg then redis.call('HSET', rec, 'msg', msg) end
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'queued', 'job', id, 'task', f[3])
    n = n + 1
  end
  redis.call('ZREM', scheduled, id)
end
flush_done(c)
local nxt = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')
local next_due = -1
if #nxt > 0 then next_due = tonumber(nxt[2]) end
local last = redis.call('XREVRANGE', wake, '+', '-', 'COUNT', 1)
local wake_id = '0-0'
if #last > 0 then wake_id = last[1][1] end
return {n, int(next_due), int(now), wake_id}

-- On shutdown: give back every message this consumer still holds, then leave the group and the registry.
-- A job that was running goes back to its stream (a grouped job: the head of its group) as queued, the interrupted
-- attempt not counted and its permits given back.
-- KEYS: events, workers, worker record, stream_1 .. stream_n
-- ARGV: prefix, group, consumer, events_maxlen
-- Returns the number of jobs put back.
local events, workers, record = KEYS[1], KEYS[2], KEYS[3]
local prefix, group, consumer, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local c = {prefix = prefix, maxlen = maxlen, now = now_ms()}
local n = 0
for i = 4, #KEYS do
  local stream = KEYS[i]
  if redis.call('EXISTS', stream) == 1 then
    local pending = redis.call('XPENDING', stream, group, '-', '+', 100000, consumer)
    for _, p in ipairs(pending) do
      local msgid = p[1]
      local entry = redis.call('XRANGE', stream, msgid, msgid)
      local jobid = nil
      if #entry > 0 then jobid = field(entry[1][2], 'j') end
      redis.call('XACK', stream, group, msgid)
      redis.call('XDEL', stream, msgid)
      if jobid then
        local rec = prefix .. K.job .. jobid
        local f = redis.call('HMGET', rec, 'status', 'task', 'hold', 'group')
        if f[1] == 'active' or f[1] == 'queued' then
          if f[1] == 'active' then redis.call('HINCRBY', rec, 'attempts', -1) end
          if f[3] then free_permits(c, jobid, rec, f[2], f[4]) end
          redis.call('HSET', rec, 'status', 'queued')
          if f[4] then to_group(c, jobid, f[4], true) else redis.call('XADD', stream, '*', 'j', jobid) end
          redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'requeued', 'job', jobid,
            'task', f[2], 'worker', consumer)
          n = n + 1
        end
      end
    end
    redis.call('XGROUP', 'DELCONSUMER', stream, group, consumer)
  end
end
redis.call('DEL', record)
redis.call('ZREM', workers, consumer)
return n

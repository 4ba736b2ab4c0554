-- A read-only snapshot of a queue for the autoscaler, in one call.
-- KEYS: scheduled, stats, workers, stream_1 .. stream_n (the levels, then the group stream), group jobs counter
-- ARGV: group, worker_ttl_ms
-- Returns {now ms, due, live workers, enqueued, succeeded, failed,
--          then per stream: waiting, pending, enqueue ms of the oldest waiting entry or -1,
--          then the jobs waiting in groups for their turn}.
local scheduled, stats, workers = KEYS[1], KEYS[2], KEYS[3]
local group, ttl = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local c = redis.call('HMGET', stats, 'enqueued', 'succeeded', 'failed')
local out = {
  int(now),
  redis.call('ZCOUNT', scheduled, '-inf', int(now)),
  redis.call('ZCOUNT', workers, int(now - ttl), '+inf'),
  tonumber(c[1]) or 0, tonumber(c[2]) or 0, tonumber(c[3]) or 0,
}
for i = 4, #KEYS - 1 do
  local stream = KEYS[i]
  local length, pending, oldest = 0, 0, -1
  if redis.call('EXISTS', stream) == 1 then
    length = redis.call('XLEN', stream)
    local last = nil
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      if field(g, 'name') == group then
        pending = tonumber(field(g, 'pending')) or 0
        last = field(g, 'last-delivered-id')
      end
    end
    -- Settled entries are deleted, so the first entry after the group's last delivered id is the oldest
    -- waiting one; its id carries the time it entered the stream.
    local first = redis.call('XRANGE', stream, last and ('(' .. last) or '-', '+', 'COUNT', 1)
    if #first > 0 then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
  end
  out[#out + 1] = math.max(0, length - pending)
  out[#out + 1] = pending
  out[#out + 1] = int(oldest)
end
out[#out + 1] = tonumber(redis.call('GET', KEYS[#KEYS])) or 0
return out

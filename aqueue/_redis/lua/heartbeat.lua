-- Renew this worker's running messages and its registry entry.
-- Only messages this consumer still owns are renewed (XCLAIM JUSTID resets their idle time without counting a
-- delivery); one that another worker took back is reported, never stolen back.
-- KEYS: workers, worker record, stream_1 .. stream_n
-- ARGV: group, consumer, ttl_ms, info JSON, then pairs: stream index, message id
-- A stream or group that no longer exists (Redis restarted empty, FLUSHALL) loses its messages, not the heartbeat:
-- the worker stays registered, and the claim loop recreates the groups.
-- Returns the message ids this worker no longer owns.
local workers, record = KEYS[1], KEYS[2]
local group, consumer, ttl, info = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
local mine, lost = {}, {}
for i = 5, #ARGV, 2 do
  local si, msgid = tonumber(ARGV[i]), ARGV[i + 1]
  local p = redis.pcall('XPENDING', KEYS[2 + si], group, msgid, msgid, 1)
  if type(p) == 'table' and not p.err and #p > 0 and p[1][2] == consumer then
    mine[si] = mine[si] or {}
    table.insert(mine[si], msgid)
  else
    table.insert(lost, msgid)
  end
end
for si, ids in pairs(mine) do
  for j = 1, #ids, 500 do
    local args = {'XCLAIM', KEYS[2 + si], group, consumer, 0}
    for k = j, math.min(j + 499, #ids) do args[#args + 1] = ids[k] end
    args[#args + 1] = 'JUSTID'
    redis.call(unpack(args))
  end
end
redis.call('HSET', record, 'info', info, 'seen', int(now))
redis.call('PEXPIRE', record, int(ttl))
redis.call('ZADD', workers, int(now), consumer)
redis.call('ZREMRANGEBYSCORE', workers, '-inf', int(now - ttl))
return lost

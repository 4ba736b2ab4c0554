-- Delete finished job records older than a cutoff, from the per-status cleanup index (never a keyspace scan).
-- A record whose status changed since it was indexed (a dead job retried) is only dropped from the index.
-- Dead-letter entries older than the cutoff go too when 'dead' is among the statuses.
-- KEYS: events
-- ARGV: prefix, events_maxlen, older_than ms (records finished at least that long ago), limit, statuses...
-- Returns {records deleted, 1 if more remain}.
local prefix, maxlen, limit = ARGV[1], ARGV[2], tonumber(ARGV[4])
local cutoff = int(now_ms() - tonumber(ARGV[3]))
local deleted, more = 0, 0
for i = 5, #ARGV do
  local st = ARGV[i]
  local index = prefix .. 'done:' .. st
  local ids = redis.call('ZRANGEBYSCORE', index, '-inf', cutoff, 'LIMIT', 0, limit - deleted)
  for _, id in ipairs(ids) do
    local rec = prefix .. 'job:' .. id
    if redis.call('HGET', rec, 'status') == st then
      redis.call('DEL', rec)
      deleted = deleted + 1
    end
    redis.call('ZREM', index, id)
  end
  if st == 'dead' then redis.call('XTRIM', prefix .. 'dead', 'MINID', cutoff) end
  if #ids > 0 and redis.call('ZCOUNT', index, '-inf', cutoff) > 0 then more = 1 end
  if deleted >= limit then more = 1; break end
end
if deleted > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'type', 'cleanup', 'deleted', deleted, 'before', cutoff)
end
return {deleted, more}

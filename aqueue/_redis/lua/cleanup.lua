-- Delete finished job records older than a cutoff, from the per-status cleanup index (never a keyspace scan).
-- The index done:<status> is a stream of entries {ids = 'id,id,...'} whose ids are the finish times, so the
-- entries older than the cutoff are exactly the range - .. cutoff. A record whose status changed since (a dead job
-- retried) is left alone. Dead-letter entries older than the cutoff go too when 'dead' is among the statuses.
-- KEYS: events
-- ARGV: prefix, events_maxlen, older_than ms (records finished at least that long ago), limit, statuses...
-- Returns {records deleted, 1 if more remain}.
local prefix, maxlen, limit = ARGV[1], ARGV[2], tonumber(ARGV[4])
local cutoff = int(now_ms() - tonumber(ARGV[3]))
local deleted, seen, more = 0, 0, 0
for i = 5, #ARGV do
  local st = ARGV[i]
  local index = prefix .. K.done .. st
  while seen < limit do
    local entries = redis.call('XRANGE', index, '-', cutoff, 'COUNT', 100)
    if #entries == 0 then break end
    for _, e in ipairs(entries) do
      local ids = field(e[2], 'ids') or ''
      for id in string.gmatch(ids, '[^,]+') do
        local rec = prefix .. K.job .. id
        if redis.call('HGET', rec, 'status') == st then
          redis.call('DEL', rec)
          deleted = deleted + 1
        end
        seen = seen + 1
      end
      redis.call('XDEL', index, e[1])
    end
  end
  if st == 'dead' then redis.call('XTRIM', prefix .. K.dead, 'MINID', cutoff) end
  if seen >= limit then
    more = 1
    break
  end
end
if deleted > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'type', 'cleanup', 'deleted', deleted, 'before', cutoff)
end
return {deleted, more}

-- Shared helpers, prepended to every aqueue script when it is loaded.
-- Numbers go to Redis through int() so that large millisecond values never print in exponent form.
local function int(n) return string.format('%d', n) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Entries of a single-stream XREADGROUP reply. Redis nests {{name, entries}}; fakeredis answers {name, entries}.
local function entries_of(reply)
  if not reply or reply == false or #reply == 0 then return {} end
  if type(reply[1]) == 'table' then return reply[1][2] end
  return reply[2]
end

-- Value of one field in a flat {k1, v1, k2, v2, ...} reply.
local function field(fields, name)
  if type(fields) ~= 'table' then return nil end
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local TERMINAL = {succeeded = true, dead = true, cancelled = true}

-- Per-task lifetime counters: a Lua table {[counter .. ':' .. task] = n} filled while a script runs, written with
-- one HINCRBY per distinct field at the end (a batch usually holds few tasks).
local function count_task(counts, counter, task)
  local f = counter .. ':' .. (task or '')
  counts[f] = (counts[f] or 0) + 1
end

local function flush_task_counts(prefix, counts)
  for f, n in pairs(counts) do redis.call('HINCRBY', prefix .. 'stats:task', f, n) end
end

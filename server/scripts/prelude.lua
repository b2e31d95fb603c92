-- Shared by every celeriac script. ARGV[1] is the key prefix. Keys of one queue share the hash
-- tag {queue}; the id index (prefix:id:ID) maps a task id to its queue.
local P = ARGV[1]
local function qk(q, s) return P .. ':{' .. q .. '}:' .. s end
local function tk(q, id) return P .. ':{' .. q .. '}:t:' .. id end
local function ik(id) return P .. ':id:' .. id end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Ends a task: its hash and id index expire after the result TTL.
local function finish(q, id, key, state, now)
  redis.call('HSET', key, 'st', state, 'f', now)
  local h = redis.call('HMGET', key, 'ttl', 'uk')
  local ttl = tonumber(h[1]) or 86400
  redis.call('EXPIRE', key, ttl)
  redis.call('EXPIRE', ik(id), ttl)
  -- A unique key keeps deduplicating for as long as the result is kept.
  if h[2] and h[2] ~= '' then redis.call('EXPIRE', qk(q, 'u:' .. h[2]), ttl) end
end
-- Puts a task back at its original place in the ready queue.
local function make_ready(q, id, key)
  local score = redis.call('HGET', key, 's')
  redis.call('HSET', key, 'st', 'queued')
  redis.call('ZADD', qk(q, 'ready'), score, id)
end

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
-- Leases up to n ready tasks of queue q to one worker, appending (id, name, args, attempt,
-- token, lease_ms, soft_ms, hard_ms) per task to out. Each gets a fresh fencing token, its
-- delivery count (attempt) goes up, and it enters the leased set with its deadline. Cost per
-- task: one HMGET and one HSET; tokens and the leased set are written once per call.
local function lease_ready(q, n, default_lease, worker, out)
  if redis.call('EXISTS', qk(q, 'paused')) == 1 then return end
  local popped = redis.call('ZPOPMIN', qk(q, 'ready'), n)
  if #popped == 0 then return end
  local leased = {}
  local now = now_ms()
  local deadline = now + default_lease
  -- Tokens only need to be unique and growing per queue: one INCRBY reserves this call's block.
  local tok = redis.call('INCRBY', qk(q, 'tok'), #popped / 2) - #popped / 2
  for i = 1, #popped, 2 do
    local id = popped[i]
    local key = tk(q, id)
    local h = redis.call('HMGET', key, 'n', 'a', 'at', 'sm', 'hm', 'ex')
    local expires = tonumber(h[6]) or 0
    if h[1] and expires > 0 and now > expires then
      finish(q, id, key, 'expired', now)
    elseif h[1] then
      tok = tok + 1
      local at = tonumber(h[3]) + 1
      redis.call('HSET', key, 'st', 'active', 'at', at, 'tok', tok, 'w', worker, 'sa', now)
      leased[#leased + 1] = deadline; leased[#leased + 1] = id
      out[#out + 1] = id; out[#out + 1] = h[1]; out[#out + 1] = h[2]; out[#out + 1] = at
      out[#out + 1] = tok; out[#out + 1] = default_lease; out[#out + 1] = h[4]
      out[#out + 1] = h[5]
    end
  end
  for first = 1, #leased, 2000 do
    redis.call('ZADD', qk(q, 'leased'), unpack(leased, first, math.min(first + 1999, #leased)))
  end
end

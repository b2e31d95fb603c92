-- settle(prefix, backoff_base_ms, backoff_cap_ms, poison_limit, dead_max, n, then n × 8 fields:
--   op ('ack', 'fail', 'touch', 'requeue'), queue, id, token, payload (result, error or
--   lease_ms), retry (0/1), reason, jitter (0..1 from the broker))
-- Every worker outcome goes through here, fenced by the token: a stale token changes nothing.
-- → one status per entry: a state name, 'ok', or 'LEASE_EXPIRED' / 'NOT_FOUND'.
-- Cost per ack: one HMGET, one HSET and one EXPIRE; leased-set removals for acks are made once
-- per queue per call.
local base, cap, poison = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local dead_max, n = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local now_s = int(now)
local out = {}

-- A task that will not run again stays, without expiry, in its queue's dead set for an operator
-- to requeue or purge; past dead_max, the oldest dead tasks are deleted for good.
local function bury(q, key, id)
  finish(q, key, 'dead', now)
  redis.call('PERSIST', key)
  local dk = qk(q, 'dead')
  redis.call('ZADD', dk, int(now), id)
  local over = redis.call('ZCARD', dk) - dead_max
  if over > 0 then
    local old = redis.call('ZPOPMIN', dk, over)
    for i = 1, #old, 2 do redis.call('DEL', tk(old[i])) end
  end
  return 'dead'
end

local function fail(q, id, key, err, retry, reason, jitter)
  redis.call('ZREM', qk(q, 'leased'), id)
  local h = redis.call('HMGET', key, 'at', 'mr', 'kl')
  local at, mr = tonumber(h[1]) or 0, tonumber(h[2]) or 0
  redis.call('HSET', key, 'e', err, 'rs', reason)
  if reason == 'cancelled' then
    finish(q, key, 'cancelled', now)
    return 'cancelled'
  end
  if reason == 'worker_lost' then
    local kl = redis.call('HINCRBY', key, 'kl', 1)
    if kl >= poison then return bury(q, key, id) end
  end
  if retry == '1' and at <= mr then
    -- Exponential backoff with the broker's jitter, so tasks failing together spread out.
    local delay = math.min(cap, base * 2 ^ (at - 1))
    delay = math.floor(delay / 2 + delay / 2 * tonumber(jitter))
    redis.call('HSET', key, 'st', 'retrying')
    redis.call('ZADD', qk(q, 'delayed'), int(now + delay), id)
    return 'retrying'
  end
  if retry == '1' and mr > 0 then return bury(q, key, id) end
  finish(q, key, 'failed', now)
  return 'failed'
end

local acked = {}

-- The success path, kept to the fewest commands: finish() without its re-read.
local function ack(q, id, key, result, ttl, uk)
  local ids = acked[q]
  if not ids then ids = {}; acked[q] = ids end
  ids[#ids + 1] = id
  ttl = ttl or '86400'
  redis.call('HSET', key, 'r', result, 'st', 'succeeded', 'f', now_s)
  redis.call('EXPIRE', key, ttl)
  if uk and uk ~= '' then redis.call('EXPIRE', qk(q, 'u:' .. uk), ttl) end
end

for i = 0, n - 1 do
  local b = 7 + i * 8
  local op, q, id, tok = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local key = tk(id)
  local h = redis.call('HMGET', key, 'st', 'tok', 'ttl', 'uk', 'q')
  -- A worker resending an outcome after a reconnect no longer knows the lease's queue.
  if q == '' then q = h[5] or '' end
  if not h[1] then
    out[#out + 1] = 'NOT_FOUND'
  elseif h[1] ~= 'active' or h[2] ~= tok then
    out[#out + 1] = 'LEASE_EXPIRED'
  elseif op == 'ack' then
    ack(q, id, key, ARGV[b + 4], h[3], h[4])
    out[#out + 1] = 'succeeded'
  elseif op == 'fail' then
    out[#out + 1] = fail(q, id, key, ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7])
  elseif op == 'touch' then
    redis.call('ZADD', qk(q, 'leased'), 'XX', int(now + tonumber(ARGV[b + 4])), id)
    out[#out + 1] = 'ok'
  else
    redis.call('ZREM', qk(q, 'leased'), id)
    make_ready(q, id, key)
    out[#out + 1] = 'queued'
  end
end
for q, ids in pairs(acked) do
  for first = 1, #ids, 4000 do
    redis.call('ZREM', qk(q, 'leased'), unpack(ids, first, math.min(first + 3999, #ids)))
  end
end
return out

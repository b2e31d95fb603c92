-- reap(prefix, max) — run by every broker on a timer; safe to run concurrently because each
-- move is atomic. Requeues tasks whose lease ran out and moves due delayed/retrying tasks to
-- their ready queue. → flat list of (queue, moved) for queues where something moved, then the
-- ms until the next delayed task is due.
local max = tonumber(ARGV[2])
local now = now_ms()
local out = {}
local next_due = -1
for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do
  local moved = 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', qk(q, 'leased'), '-inf', now, 'LIMIT', 0, max)) do
    redis.call('ZREM', qk(q, 'leased'), id)
    local key = tk(id)
    if redis.call('EXISTS', key) == 1 then
      redis.call('HSET', key, 'rs', 'lease_expired')
      make_ready(q, id, key)
      moved = moved + 1
    end
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', qk(q, 'delayed'), '-inf', now, 'LIMIT', 0, max)) do
    redis.call('ZREM', qk(q, 'delayed'), id)
    local key = tk(id)
    if redis.call('EXISTS', key) == 1 then
      make_ready(q, id, key)
      moved = moved + 1
    end
  end
  if moved > 0 then out[#out + 1] = q; out[#out + 1] = moved end
  local first = redis.call('ZRANGE', qk(q, 'delayed'), 0, 0, 'WITHSCORES')
  if first[2] then
    local wait = tonumber(first[2]) - now
    if next_due < 0 or wait < next_due then next_due = math.max(wait, 0) end
  end
end
-- Last element: ms until the next delayed task is due (-1: none), so the broker can wake then
-- instead of on its next tick.
out[#out + 1] = next_due
return out

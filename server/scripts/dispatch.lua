-- dispatch(prefix, queue, n, default_lease_ms, worker)
-- Leases up to n ready tasks to one worker: each gets a fresh fencing token, its delivery count
-- (attempt) goes up, and it enters the leased set with its deadline.
-- → flat list of (id, name, args, attempt, token, lease_ms, soft_ms, hard_ms) per task.
-- Cost per task: one HMGET and one HSET; tokens and the leased set are written once per call.
local q, n, default_lease, worker = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
if redis.call('EXISTS', qk(q, 'paused')) == 1 then return {} end
local popped = redis.call('ZPOPMIN', qk(q, 'ready'), n)
if #popped == 0 then return {} end
local out, leased = {}, {}
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
return out

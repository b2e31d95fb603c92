-- cancel(prefix, id) → {'cancelled', queue, token, worker} (token and worker when it was
-- running, so the broker can tell that worker), {'ENDED', queue, state} when it had already
-- ended (a second cancel included), or {'NOT_FOUND'}.
local id = ARGV[2]
local key = tk(id)
local h = redis.call('HMGET', key, 'st', 'tok', 'w', 'q')
local st, q = h[1], h[4]
if not st then return {'NOT_FOUND'} end
local now = now_ms()
if st == 'queued' then
  redis.call('ZREM', qk(q, 'ready'), id)
elseif st == 'scheduled' or st == 'retrying' then
  redis.call('ZREM', qk(q, 'delayed'), id)
elseif st == 'active' then
  redis.call('ZREM', qk(q, 'leased'), id)
else
  return {'ENDED', q, st}
end
redis.call('HSET', key, 'rs', 'cancelled')
finish(q, key, 'cancelled', now)
if st == 'active' then return {'cancelled', q, h[2], h[3]} end
return {'cancelled', q}

-- admin(prefix, action, queue, arg) for operators:
--   pause / resume            → 'ok' (the paused flag lives in Redis: it survives restarts)
--   dead_list (arg: count)    → ids in the dead set, oldest first
--   dead_requeue (arg: id|'') → how many dead tasks went back to ready (one id, or all)
--   dead_purge                → how many dead tasks were deleted
local action, q, arg = ARGV[2], ARGV[3], ARGV[4]
if action == 'pause' then
  redis.call('SET', qk(q, 'paused'), 1)
  redis.call('SADD', P .. ':queues', q)
  return 'ok'
elseif action == 'resume' then
  redis.call('DEL', qk(q, 'paused'))
  return 'ok'
elseif action == 'dead_list' then
  return redis.call('ZRANGE', qk(q, 'dead'), 0, tonumber(arg) - 1)
end
local ids
if action == 'dead_requeue' and arg ~= '' then
  ids = {}
  if redis.call('ZSCORE', qk(q, 'dead'), arg) then ids[1] = arg end
else
  ids = redis.call('ZRANGE', qk(q, 'dead'), 0, -1)
end
for _, id in ipairs(ids) do
  redis.call('ZREM', qk(q, 'dead'), id)
  local key = tk(q, id)
  if action == 'dead_purge' then
    redis.call('DEL', key, ik(id))
  else
    -- A fresh start: its retry budget and crash count begin again.
    redis.call('HSET', key, 'at', 0, 'kl', 0)
    redis.call('HDEL', key, 'f', 'e', 'rs')
    make_ready(q, id, key)
  end
end
return #ids

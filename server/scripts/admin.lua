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
elseif action == 'peek' then
  -- arg: set name; ARGV[5] cursor (offset), ARGV[6] count → {next cursor (0: end), ids...}
  local cursor, count = tonumber(ARGV[5]), tonumber(ARGV[6])
  local ids = redis.call('ZRANGE', qk(q, arg), cursor, cursor + count - 1)
  local out = {0}
  if #ids == count then out[1] = cursor + count end
  for _, id in ipairs(ids) do out[#out + 1] = id end
  return out
elseif action == 'purge' then
  local n = 0
  for _, set in ipairs({'ready', 'delayed'}) do
    for _, id in ipairs(redis.call('ZRANGE', qk(q, set), 0, -1)) do
      redis.call('DEL', tk(id))
      n = n + 1
    end
    redis.call('DEL', qk(q, set))
  end
  return n
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
  local key = tk(id)
  if action == 'dead_purge' then
    redis.call('DEL', key)
  else
    -- A fresh start: its retry budget and crash count begin again.
    redis.call('HSET', key, 'at', 0, 'kl', 0)
    redis.call('HDEL', key, 'f', 'e', 'rs')
    make_ready(q, id, key)
  end
end
return #ids

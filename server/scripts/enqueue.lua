-- enqueue(prefix, default_ttl, n, then n × 13 fields:
--   id, queue, name, args, priority, max_retries, soft_ms, hard_ms, result_ttl_s, delay_ms,
--   eta_ms, expires_ms, unique_key)
-- → flat list of (id, state, existed) per task. An id that exists returns the existing task:
-- retries after a lost reply never create a second task.
local default_ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local out = {}
local now = now_ms()
for i = 0, n - 1 do
  local b = 4 + i * 13
  local id, q = ARGV[b], ARGV[b + 1]
  local existing = redis.call('GET', ik(id))
  local uk = ARGV[b + 12]
  if not existing and uk ~= '' then
    -- Unique key: while a task with this key is queued, running or its result is kept, an
    -- enqueue returns that task instead of a new one.
    local holder = redis.call('GET', qk(q, 'u:' .. uk))
    if holder and redis.call('EXISTS', tk(q, holder)) == 1 then
      id = holder
      existing = q
    end
  end
  if existing then
    local st = redis.call('HGET', tk(existing, id), 'st') or 'expired'
    out[#out + 1] = id; out[#out + 1] = st; out[#out + 1] = 1
  else
    local prio = tonumber(ARGV[b + 4])
    local seq = redis.call('INCR', qk(q, 'seq'))
    -- Higher priority first, FIFO within a priority: both packed exactly into a double.
    local score = (255 - prio) * 1099511627776 + seq
    local ttl = tonumber(ARGV[b + 8]); if ttl == 0 then ttl = default_ttl end
    local key = tk(q, id)
    local due = tonumber(ARGV[b + 10])
    local delay = tonumber(ARGV[b + 9])
    if due == 0 and delay > 0 then due = now + delay end
    local st = 'queued'
    if due > now then st = 'scheduled' end
    redis.call('HSET', key, 'q', q, 'n', ARGV[b + 2], 'a', ARGV[b + 3], 'p', prio, 's', score,
      'st', st, 'at', 0, 'mr', ARGV[b + 5], 'sm', ARGV[b + 6], 'hm', ARGV[b + 7], 'ttl', ttl,
      'ex', ARGV[b + 11], 'c', now, 'uk', uk)
    if uk ~= '' then redis.call('SET', qk(q, 'u:' .. uk), id) end
    if st == 'scheduled' then
      redis.call('ZADD', qk(q, 'delayed'), due, id)
    else
      redis.call('ZADD', qk(q, 'ready'), score, id)
    end
    redis.call('SET', ik(id), q)
    redis.call('SADD', P .. ':queues', q)
    out[#out + 1] = id; out[#out + 1] = st; out[#out + 1] = 0
  end
end
return out

-- enqueue(prefix, default_ttl, n, then n × 13 fields:
--   id, queue, name, args, priority, max_retries, soft_ms, hard_ms, result_ttl_s, delay_ms,
--   eta_ms, expires_ms, unique_key)
--   [, then dq, dn, lease_ms, worker: lease up to dn ready tasks of queue dq to that worker]
-- → flat list of (id, state, existed) per task, then the leased tasks as dispatch returns them.
-- An id that exists returns the existing task: retries after a lost reply never create a
-- second task. The optional lease saves a second round trip when a worker waits for the queue.
-- Cost per new task: one SET (dedup and id index at once) and one HSET; sequence numbers,
-- queue membership and the ready/delayed sets are written once per queue per call.
local default_ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local out = {}
local now = now_ms()

-- One INCRBY per queue reserves a block of sequence numbers for this call.
local seq = {}
for i = 0, n - 1 do
  local q = ARGV[4 + i * 13 + 1]
  seq[q] = (seq[q] or 0) + 1
end
for q, count in pairs(seq) do
  seq[q] = redis.call('INCRBY', qk(q, 'seq'), count) - count
end

local ready, delayed = {}, {}
local function add(sets, q, score, id)
  local s = sets[q]
  if not s then s = {}; sets[q] = s end
  s[#s + 1] = score; s[#s + 1] = id
end

-- The unique key's holder, when that task still exists.
local function unique_holder(q, uk)
  local holder = redis.call('GET', qk(q, 'u:' .. uk))
  if holder and redis.call('EXISTS', tk(q, holder)) == 1 then return holder end
end

local function store(b, id, q, uk)
  local prio = tonumber(ARGV[b + 4])
  seq[q] = seq[q] + 1
  -- Higher priority first, FIFO within a priority: both packed exactly into a double.
  local score = (255 - prio) * 1099511627776 + seq[q]
  local ttl = tonumber(ARGV[b + 8]); if ttl == 0 then ttl = default_ttl end
  local due = tonumber(ARGV[b + 10])
  local delay = tonumber(ARGV[b + 9])
  if due == 0 and delay > 0 then due = now + delay end
  local st = 'queued'
  if due > now then st = 'scheduled' end
  redis.call('HSET', tk(q, id), 'q', q, 'n', ARGV[b + 2], 'a', ARGV[b + 3], 'p', prio, 's', score,
    'st', st, 'at', 0, 'mr', ARGV[b + 5], 'sm', ARGV[b + 6], 'hm', ARGV[b + 7], 'ttl', ttl,
    'ex', ARGV[b + 11], 'c', now, 'uk', uk)
  if uk ~= '' then redis.call('SET', qk(q, 'u:' .. uk), id) end
  if st == 'scheduled' then add(delayed, q, due, id) else add(ready, q, score, id) end
  return st
end

for i = 0, n - 1 do
  local b = 4 + i * 13
  local id, q, uk = ARGV[b], ARGV[b + 1], ARGV[b + 12]
  local existing
  if uk ~= '' and redis.call('EXISTS', ik(id)) == 0 then
    -- Unique key: while a task with this key is queued, running or its result is kept, an
    -- enqueue returns that task instead of a new one.
    local holder = unique_holder(q, uk)
    if holder then id, existing = holder, q end
  end
  -- Claims the id and writes its index in one command; an id already taken answers its queue.
  if not existing then existing = redis.call('SET', ik(id), q, 'NX', 'GET') end
  if existing then
    local st = redis.call('HGET', tk(existing, id), 'st') or 'expired'
    out[#out + 1] = id; out[#out + 1] = st; out[#out + 1] = 1
  else
    out[#out + 1] = id; out[#out + 1] = store(b, id, q, uk); out[#out + 1] = 0
  end
end

-- Lua's unpack takes a bounded number of values: members go in chunks.
local function zadd_all(sets, name)
  for q, s in pairs(sets) do
    for first = 1, #s, 2000 do
      redis.call('ZADD', qk(q, name), unpack(s, first, math.min(first + 1999, #s)))
    end
  end
end
zadd_all(ready, 'ready')
zadd_all(delayed, 'delayed')
for q in pairs(seq) do redis.call('SADD', P .. ':queues', q) end
local d = 4 + n * 13
if ARGV[d + 3] then lease_ready(ARGV[d], tonumber(ARGV[d + 1]), tonumber(ARGV[d + 2]), ARGV[d + 3], out) end
return out

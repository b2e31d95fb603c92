-- enqueue(prefix, default_ttl, n, then n × 10 fields:
--   id, queue, body (name, priority, limits, created, args: the broker's to read), priority,
--   max_retries, result_ttl_s, delay_ms, eta_ms, expires_ms, unique_key)
--   [, then dq, dn, lease_ms, worker: lease up to dn ready tasks of queue dq to that worker]
-- → flat list of (id, state, existed) per task, then the leased tasks as dispatch returns them,
--   except that a task of this call comes back with its index in the call for a body: the
--   broker still holds what it sent, and echoing every body back cost a copy of each.
-- An id that exists returns the existing task: retries after a lost reply never create a
-- second task. The optional lease saves a second round trip when a worker waits for the queue.
-- Cost per new task: one HSET and a share of one EXISTS (is any id taken?); sequence numbers,
-- tokens, queue membership and the ready/delayed sets are written once per queue per call. A
-- task the lease takes is written once, already active, and never enters the ready set when
-- that was empty.
local default_ttl = ARGV[2]
local n = tonumber(ARGV[3])
local out = {}
local now = now_ms()
local d = 4 + n * 10
local dq, dn, lease_ms, worker = ARGV[d], tonumber(ARGV[d + 1]), tonumber(ARGV[d + 2]), ARGV[d + 3]
if worker and redis.call('EXISTS', qk(dq, 'paused')) == 1 then worker = nil end

-- One INCRBY per queue reserves this call's sequence numbers (and the lease's tokens).
local seq = {}
for i = 0, n - 1 do
  local q = ARGV[4 + i * 10 + 1]
  seq[q] = (seq[q] or 0) + 1
end
if worker then seq[dq] = (seq[dq] or 0) + dn end
for q, count in pairs(seq) do seq[q] = reserve_seq(q, count) end

local ready, delayed = {}, {}
local fresh = {}  -- id → fields of the tasks this call creates, written at the end
local function add(sets, q, score, id)
  local s = sets[q]
  if not s then s = {}; sets[q] = s end
  s[#s + 1] = score; s[#s + 1] = id
end

local function state_of(id)
  local t = fresh[id]
  if t then return t.st end
  return redis.call('HGET', tk(id), 'st')
end

-- The unique key's holder and its state, when that task still exists.
local function unique_holder(q, uk)
  local holder = redis.call('GET', qk(q, 'u:' .. uk))
  if holder then
    local st = state_of(holder)
    if st then return holder, st end
  end
end

local function store(b, id, q, uk)
  seq[q] = seq[q] + 1
  -- Higher priority first, FIFO within a priority: both packed exactly into a double.
  local score = (255 - tonumber(ARGV[b + 3])) * 1099511627776 + seq[q]
  local ttl = ARGV[b + 5]; if tonumber(ttl) == 0 then ttl = default_ttl end
  local due = tonumber(ARGV[b + 7])
  local delay = tonumber(ARGV[b + 6])
  if due == 0 and delay > 0 then due = now + delay end
  local st = 'queued'
  if due > now then st = 'scheduled' end
  local ss = int(score)
  fresh[id] = {i = (b - 4) / 10, q = q, d = ARGV[b + 2], s = score, ss = ss, st = st,
    mr = ARGV[b + 4], ttl = ttl, ex = tonumber(ARGV[b + 8]), exs = ARGV[b + 8], uk = uk}
  if uk ~= '' then redis.call('SET', qk(q, 'u:' .. uk), id) end
  if st == 'scheduled' then add(delayed, q, int(due), id) else add(ready, q, ss, id) end
  return st
end

-- Is any id of this call taken? One EXISTS of them all answers for the common case (none),
-- instead of one HGET per task.
local taken = false
for first = 0, n - 1, 2000 do
  local keys = {}
  for i = first, math.min(first + 1999, n - 1) do keys[#keys + 1] = tk(ARGV[4 + i * 10]) end
  if redis.call('EXISTS', unpack(keys)) > 0 then taken = true; break end
end

for i = 0, n - 1 do
  local b = 4 + i * 10
  local id, q, uk = ARGV[b], ARGV[b + 1], ARGV[b + 9]
  local st
  if taken then st = state_of(id) elseif fresh[id] then st = fresh[id].st end
  if not st and uk ~= '' then
    -- Unique key: while a task with this key is queued, running or its result is kept, an
    -- enqueue returns that task instead of a new one.
    local holder, hst = unique_holder(q, uk)
    if holder then id, st = holder, hst end
  end
  if st then
    out[#out + 1] = id; out[#out + 1] = st; out[#out + 1] = 1
  else
    out[#out + 1] = id; out[#out + 1] = store(b, id, q, uk); out[#out + 1] = 0
  end
end

-- When the worker's queue had nothing ready, the lease takes this call's own tasks, best score
-- first, straight from here: they are written once, already active.
local popped
local mine = worker and ready[dq]
if mine and redis.call('ZCARD', qk(dq, 'ready')) == 0 then
  -- mine is (score, id) pairs in call order, which is score order unless priorities differ.
  local sorted = true
  for k = 3, #mine, 2 do
    if fresh[mine[k + 1]].s < fresh[mine[k - 1]].s then sorted = false; break end
  end
  if not sorted then
    local pairs_ = {}
    for k = 1, #mine, 2 do pairs_[#pairs_ + 1] = {mine[k], mine[k + 1], fresh[mine[k + 1]].s} end
    table.sort(pairs_, function(x, y) return x[3] < y[3] end)
    mine = {}
    for _, p in ipairs(pairs_) do mine[#mine + 1] = p[1]; mine[#mine + 1] = p[2] end
  end
  popped, ready[dq] = {}, {}
  local rest = ready[dq]
  for k = 1, #mine, 2 do
    if k <= 2 * dn then popped[#popped + 1] = mine[k + 1]; popped[#popped + 1] = mine[k]
    else rest[#rest + 1] = mine[k]; rest[#rest + 1] = mine[k + 1] end
  end
end
for q, s in pairs(ready) do zadd_chunks(qk(q, 'ready'), s) end
for q, s in pairs(delayed) do zadd_chunks(qk(q, 'delayed'), s) end
if worker and not popped then popped = redis.call('ZPOPMIN', qk(dq, 'ready'), dn) end
if popped and #popped > 0 then
  lease_popped(dq, popped, seq[dq], now, lease_ms, worker, out, fresh)
end
for id, t in pairs(fresh) do hset_task(id, t) end
for q in pairs(seq) do redis.call('SADD', P .. ':queues', q) end
return out

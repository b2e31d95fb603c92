-- Shared by every celeriac script. ARGV[1] is the key prefix. Keys of one queue share the hash
-- tag {queue}; a task's hash is named by its id alone, so an id finds its task (and, in field
-- q, its queue) in one lookup.
local P = ARGV[1]
local function qk(q, s) return P .. ':{' .. q .. '}:' .. s end
local function tk(id) return P .. ':t:' .. id end
-- Redis turns a Lua number argument into text with "%.17g", a slow floating-point path that
-- showed in profiles: integers go to redis.call as strings made here.
local format = string.format
local function int(n) return format('%d', n) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Ends a task: its hash expires after the result TTL.
local function finish(q, key, state, now)
  redis.call('HSET', key, 'st', state, 'f', int(now))
  local h = redis.call('HMGET', key, 'ttl', 'uk')
  local ttl = h[1] or '86400'
  redis.call('EXPIRE', key, ttl)
  -- A unique key keeps deduplicating for as long as the result is kept.
  if h[2] and h[2] ~= '' then redis.call('EXPIRE', qk(q, 'u:' .. h[2]), ttl) end
end
-- Puts a task back at its original place in the ready queue.
local function make_ready(q, id, key)
  local score = redis.call('HGET', key, 's')
  redis.call('HSET', key, 'st', 'queued')
  redis.call('ZADD', qk(q, 'ready'), score, id)
end
-- Fencing tokens come from the queue's sequence counter: unique and growing per queue. One
-- INCRBY reserves a block of count numbers; returns the number before the first.
local function reserve_seq(q, count)
  return redis.call('INCRBY', qk(q, 'seq'), count) - count
end
local function zadd_chunks(key, s)
  -- Lua's unpack takes a bounded number of values: members go in chunks.
  for first = 1, #s, 2000 do
    redis.call('ZADD', key, unpack(s, first, math.min(first + 1999, #s)))
  end
end
-- Appends one leased task to a lease reply: (id, body, attempt, token, lease_ms). The body
-- (field d: name, priority, limits, created, args) is the broker's to read; for a task the
-- same enqueue call created it is that task's index in the call (an integer reply).
local function lease_out(out, id, d, at, tok, lease_ms)
  out[#out + 1] = id; out[#out + 1] = d; out[#out + 1] = at; out[#out + 1] = tok
  out[#out + 1] = lease_ms
end
-- Writes a task created by this call (t: its fields by name) in one HSET. Every argument costs
-- Redis time twice (the command, then its copy in the AOF), so fields at their default (no
-- retries, no expiry, no unique key, no delivery yet) are left out.
local function hset_task(id, t)
  local s = t.ss or int(t.s)
  if t.tok and t.mr == '0' and t.ex == 0 and t.uk == '' then
    -- The common case, without building an argument table.
    redis.call('HSET', tk(id), 'q', t.q, 'd', t.d, 's', s, 'st', t.st, 'ttl', t.ttl,
      'at', int(t.at), 'tok', int(t.tok), 'w', t.w, 'sa', t.sa)
    return
  end
  local f = {'q', t.q, 'd', t.d, 's', s, 'st', t.st, 'ttl', t.ttl}
  if t.mr ~= '0' then f[#f + 1] = 'mr'; f[#f + 1] = t.mr end
  if t.ex ~= 0 then f[#f + 1] = 'ex'; f[#f + 1] = t.exs end
  if t.uk ~= '' then f[#f + 1] = 'uk'; f[#f + 1] = t.uk end
  if t.tok then
    f[#f + 1] = 'at'; f[#f + 1] = int(t.at); f[#f + 1] = 'tok'; f[#f + 1] = int(t.tok)
    f[#f + 1] = 'w'; f[#f + 1] = t.w; f[#f + 1] = 'sa'; f[#f + 1] = t.sa
  end
  redis.call('HSET', tk(id), unpack(f))
end
-- Leases the ids popped from q's ready set (flat id, score list) to one worker, appending each
-- to out. Each gets a fresh fencing token from tok on, its delivery count (attempt) goes up,
-- and it enters the leased set with its deadline. Cost per task: one HMGET and one HSET, or
-- nothing for a task this call created (fresh: id → fields, written by the caller afterwards).
-- A missing at is 0 deliveries; a missing ex, no expiry.
local function lease_popped(q, popped, tok, now, default_lease, worker, out, fresh)
  local leased = {}
  local deadline, now_s = int(now + default_lease), int(now)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local t = fresh and fresh[id]
    local d, at
    if t and (t.ex == 0 or now <= t.ex) then
      d, at = t.i or t.d, 1
      t.st, t.at, t.tok, t.w, t.sa = 'active', at, tok + 1, worker, now_s
    else
      -- An expired task of this call is written first, so it can be finished like any other.
      if t then hset_task(id, t); fresh[id] = nil end
      local key = tk(id)
      local h = redis.call('HMGET', key, 'st', 'd', 'at', 'ex')
      local expires = tonumber(h[4]) or 0
      if h[1] and expires > 0 and now > expires then
        finish(q, key, 'expired', now)
      elseif h[1] then
        -- A record without a body (not written by this layout) still goes out: the broker
        -- reports it unreadable and the worker fails it.
        d, at = h[2] or '', (tonumber(h[3]) or 0) + 1
        redis.call('HSET', key, 'st', 'active', 'at', int(at), 'tok', int(tok + 1), 'w', worker,
          'sa', now_s)
      end
    end
    if d then
      tok = tok + 1
      leased[#leased + 1] = deadline; leased[#leased + 1] = id
      lease_out(out, id, d, at, tok, default_lease)
    end
  end
  zadd_chunks(qk(q, 'leased'), leased)
end
-- Leases up to n ready tasks of queue q to one worker (see lease_popped).
local function lease_ready(q, n, default_lease, worker, out, now)
  if redis.call('EXISTS', qk(q, 'paused')) == 1 then return end
  local popped = redis.call('ZPOPMIN', qk(q, 'ready'), n)
  if #popped == 0 then return end
  lease_popped(q, popped, reserve_seq(q, #popped / 2), now, default_lease, worker, out)
end

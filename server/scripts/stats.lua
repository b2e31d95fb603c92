-- stats(prefix) → flat list of (queue, ready, leased, delayed, dead, paused) per queue.
local out = {}
for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do
  out[#out + 1] = q
  out[#out + 1] = redis.call('ZCARD', qk(q, 'ready'))
  out[#out + 1] = redis.call('ZCARD', qk(q, 'leased'))
  out[#out + 1] = redis.call('ZCARD', qk(q, 'delayed'))
  out[#out + 1] = redis.call('ZCARD', qk(q, 'dead'))
  out[#out + 1] = redis.call('EXISTS', qk(q, 'paused'))
end
return out

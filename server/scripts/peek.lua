-- peek(prefix, id...) → each task's state in order (nil for a task that is gone). The pending
-- waits' periodic re-check: one call for many waits, not one command each.
local out = {}
for i = 2, #ARGV do out[i - 1] = redis.call('HGET', tk(ARGV[i]), 'st') end
return out

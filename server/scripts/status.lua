-- status(prefix, id) → HGETALL of the task (flat field/value list) or nil when unknown.
local q = redis.call('GET', ik(ARGV[2]))
if not q then return false end
local h = redis.call('HGETALL', tk(q, ARGV[2]))
if #h == 0 then return false end
return h

-- status(prefix, id) → HGETALL of the task (flat field/value list) or nil when unknown.
local h = redis.call('HGETALL', tk(ARGV[2]))
if #h == 0 then return false end
return h

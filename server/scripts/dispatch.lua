-- dispatch(prefix, queue, n, default_lease_ms, worker)
-- Leases up to n ready tasks to one worker (see lease_ready in the prelude).
-- → flat list of (id, name, args, attempt, token, lease_ms, soft_ms, hard_ms) per task.
local q, n, default_lease, worker = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local out = {}
lease_ready(q, n, default_lease, worker, out, now_ms())
return out

#!lua flags=allow-oom
-- renew: extends the lease of a running job while its worker is alive, and keeps the
-- job's stream entry owned by that worker and fresh, so no other worker takes it over.
-- Only the current lease may renew.
-- KEYS: 1 job hash, 2 model stream
-- ARGV: 1 token, 2 lease_ms, 3 group, 4 worker
-- Returns 'ok' | 'cancel' (renewed, and a cancel was requested) | 'stale'
local job_key, stream_key = KEYS[1], KEYS[2]
local token, lease_ms, group, worker = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local st = redis.call('HMGET', job_key, 'status', 'lease', 'cancel_requested', 'entry_id')
if st[1] ~= 'running' or st[2] ~= token then return 'stale' end
redis.call('HSET', job_key, 'lease_until_ms', now_ms() + lease_ms)
if st[4] then redis.call('XCLAIM', stream_key, group, worker, 0, st[4], 'JUSTID') end
if st[3] == '1' then return 'cancel' end
return 'ok'

#!lua flags=no-writes
-- outputs (read only): a page of a job's partial outputs (emit.lua), or what its
-- tombstone says.
-- KEYS: 1 job hash, 2 outputs list, 3 the bucket of the job's tombstone (as get.lua's)
-- ARGV: 1 tenant (another tenant's job reads as missing; "*", an admin's: any tenant's),
--       2 job id, 3 after (how many outputs to skip: the first returned has this index),
--       4 limit (most outputs returned)
-- Returns {'ok', status, count, {entry...}}: each entry "<attempt> <output>" as emit.lua
-- stored it, the first with index after; count: how many the job emitted in all
-- | {'gone', expired_at_ms, status} as get.lua's | {} when missing or another tenant's.
local job_key, outputs_key, gone_key = KEYS[1], KEYS[2], KEYS[3]
local tenant, id, after, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local st = redis.call('HMGET', job_key, 'status', 'tenant', 'out_n')
if not st[1] then return gone_answer(gone_key, id, tenant) end
if tenant ~= '*' and st[2] ~= tenant then return {} end
local n = tonumber(st[3] or '0')
local page = {}
if after < n and limit > 0 then
  page = redis.call('LRANGE', outputs_key, after, after + limit - 1)
end
return {'ok', st[1], n, page}

-- delete: a finished job (succeeded, failed or cancelled), its result and its partial
-- outputs are deleted now, before their TTL (DELETE /v1/jobs/{id}?purge=true). Its Idempotency-Key record goes
-- with it (the key is free again), and its dead-letter entry if it has one. The counters
-- stay: the job did end in that status (docs/redis.md, "The counters"); only a job's
-- expiry moves a count, and a finished job holds no count that expiry would move. The
-- tenant's index keeps the id, which list.lua skips as it skips an expired job. A queued
-- or running job is refused: cancel it first (DELETE without purge). Its tombstone goes
-- too: a deleted job's id answers 404, not 410 expired.
-- KEYS: 1 job hash, 2 result, 3 dead-letter stream, 4 the bucket of the job's tombstone (field <id>)
-- ARGV: 1 tenant (the job's: another tenant's job reads as missing; "*", an admin's: any
--       tenant's), 2 job id, 3 events channel
-- Returns {'deleted', status} | {'missing'} | {'refused', status}
local job_key, result_key, dlq_key, gone_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local tenant, id, channel = ARGV[1], ARGV[2], ARGV[3]
local st = redis.call('HMGET', job_key, 'status', 'tenant', 'idem_key', 'dlq_entry')
if not st[1] or (tenant ~= '*' and st[2] ~= tenant) then return {'missing'} end
if st[1] ~= 'succeeded' and st[1] ~= 'failed' and st[1] ~= 'cancelled' then
  return {'refused', st[1]}
end
-- The record names this job unless a later submit took the key over (submit.lua frees a
-- record whose job is gone; the job field says which job it names now).
if st[3] and redis.call('HGET', st[3], 'job') == id then redis.call('DEL', st[3]) end
if st[4] then redis.call('XDEL', dlq_key, st[4]) end
redis.call('DEL', job_key, result_key, job_key .. OUTPUTS_SUFFIX) -- lib.lua: its outputs
redis.call('HDEL', gone_key, id)
-- Wakes the waits and event streams on this job: their next read finds it gone.
redis.call('PUBLISH', channel, id .. ' deleted')
return {'deleted', st[1]}

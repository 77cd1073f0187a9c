#!lua flags=no-writes
-- get (read only): a job's fields and its queue position, or what its tombstone says.
-- KEYS: 1 job hash, 2 queues hash, 3 the bucket of the job's tombstone ("{fleet}:gone:<the
--       id's first 7 characters>", field <id>)
-- ARGV: 1 tenant (another tenant's job reads as missing; "*", an admin's: any tenant's),
--       2 job id
-- Returns {fields (HGETALL shape, led by id: lib.lua's job_fields), queue_position}
-- | {'gone', expired_at_ms, status} when the job's keys expired after it ended and its
-- tombstone (lib.lua's end_job) is still there | {} when missing or another tenant's.
-- Fields that hold the protocol's default are absent (lib.lua, DEFAULT_*): the reader
-- fills them in.
local job_key, queues_key, gone_key = KEYS[1], KEYS[2], KEYS[3]
local tenant, id = ARGV[1], ARGV[2]
local f = redis.call('HGETALL', job_key)
if #f == 0 then return gone_answer(gone_key, id, tenant) end
f = job_fields(f, id)
local status, owner, model, seq, retry_at
for i = 1, #f, 2 do
  local k = f[i]
  if k == 'status' then status = f[i + 1]
  elseif k == 'tenant' then owner = f[i + 1]
  elseif k == 'model' then model = f[i + 1]
  elseif k == 'queue_seq' then seq = tonumber(f[i + 1])
  elseif k == 'retry_at_ms' then retry_at = true end
end
if tenant ~= '*' and owner ~= tenant then return {} end
-- A job waiting for its retry time is not in the queue yet: no position.
local pos = 0
if status == 'queued' and seq and not retry_at then
  local head = tonumber(redis.call('HGET', queues_key, model .. ':head') or '0')
  pos = seq - head
  if pos < 1 then pos = 1 end
end
return {f, pos}

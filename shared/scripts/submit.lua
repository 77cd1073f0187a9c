-- submit: (none) -> queued. Checks the tenant's limits, then creates the job hash (with
-- its input inside, lib.lua's input_fields) and either its stream entry or its place in
-- the tenant's wait list (fair share: see feed.lua). A refused submit writes nothing.
-- KEYS: 1 job hash, 2 model stream, 3 queues hash, 4 stats hash, 5 tenant index,
--       6 entries hash, 7 tenant active set, 8 tenant rate bucket, 9 idempotency record
--       (or the job hash again when there is no Idempotency-Key), 10 model's waiting
--       list (of wait set keys), 11 this tenant's wait set for this model
-- ARGV: 1 id, 2 model, 3 input (msgpack), 4 tenant, 5 request_id, 6 priority,
--       7 metadata (JSON text or ""), 8 queue_ttl_s, 9 result_ttl_s, 10 timeout_s,
--       11 max_attempts, 12 index_cap, 13 index_cutoff (id time prefix), 14 index_ttl_s,
--       15 webhook URL (or ""), 16 webhook events (or ""), 17 max_active (0: no limit),
--       18 rate per second (0: no limit), 19 burst, 20 max queued for the model (0: no
--       limit), 21 request digest for the Idempotency-Key ("" when none), 22 ready target,
--       23 group, 24 priority rank (0 high, 1 normal, 2 low), 25 job key prefix
--       ("{fleet}:job:")
-- Returns {'queued', queue_position, created_ms} | {'replay', job id}
--       | {'limit', what, retry_after_ms}. Errors: DUPLICATE, IDEMPOTENCY.
local now = now_ms()
local model = ARGV[2]
local has_idem = ARGV[21] ~= ''
if has_idem then
  local rec = redis.call('HMGET', KEYS[9], 'job', 'digest')
  if rec[1] and redis.call('EXISTS', ARGV[25] .. rec[1]) == 0 then
    -- The job it named has expired (the record expires with it; this covers a record
    -- left from before that): the key is free again, and this is a fresh submit.
    redis.call('DEL', KEYS[9])
  elseif rec[1] then
    if rec[2] ~= ARGV[21] then
      return redis.error_reply('IDEMPOTENCY this Idempotency-Key was used with a different request')
    end
    return {'replay', rec[1]}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('DUPLICATE job id already exists')
end
-- Limits, checked before anything is written; a limit that is off costs no call.
local max_active = tonumber(ARGV[17])
if max_active > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now) -- ids whose job has expired
  if redis.call('ZCARD', KEYS[7]) >= max_active then
    return {'limit', 'active', 1000}
  end
end
local max_queue = tonumber(ARGV[20])
if max_queue > 0 and tonumber(redis.call('HGET', KEYS[4], model .. ':queued') or '0') >= max_queue then
  return {'limit', 'queue', 1000}
end
local rate = tonumber(ARGV[18])
local tokens
if rate > 0 then
  local burst = tonumber(ARGV[19])
  local b = redis.call('HMGET', KEYS[8], 'tokens', 'ms')
  tokens = tonumber(b[1] or burst)
  local last = tonumber(b[2] or now)
  tokens = math.min(burst, tokens + (now - last) * rate / 1000)
  if tokens < 1 then
    return {'limit', 'rate', math.ceil((1 - tokens) * 1000 / rate)}
  end
end
-- Accepted.
if rate > 0 then
  redis.call('HSET', KEYS[8], 'tokens', tostring(tokens - 1), 'ms', now)
  redis.call('PEXPIRE', KEYS[8], math.ceil(tonumber(ARGV[19]) * 1000 / rate) + 60000)
end
-- The active set is kept only for a tenant with a max_active limit (docs/redis.md: a
-- limit switched on later counts the jobs submitted from then on).
if max_active > 0 then
  redis.call('ZADD', KEYS[7], now + tonumber(ARGV[8]) * 1000, ARGV[1])
  redis.call('EXPIRE', KEYS[7], tonumber(ARGV[8]) + tonumber(ARGV[9]))
end
local seq = redis.call('HINCRBY', KEYS[3], model .. ':seq', 1)
local head = tonumber(redis.call('HGET', KEYS[3], model .. ':head') or '0')
local f = {'id', ARGV[1], 'status', 'queued', 'model', model, 'tenant', ARGV[4],
  'request_id', ARGV[5], 'priority', ARGV[6], 'created_ms', now, 'updated_ms', now,
  'attempts', 0, 'max_attempts', ARGV[11], 'queue_seq', seq,
  'ttl_s', ARGV[9], 'timeout_s', ARGV[10], 'queue_ttl_s', ARGV[8]}
if max_active > 0 then
  f[#f + 1] = 'active' -- in the active set: end_job takes it out
  f[#f + 1] = '1'
end
if has_idem then
  -- The record lives exactly as long as the job: every script that moves the job's TTL
  -- moves the record's with it (expire_job, through the job's idem_key field).
  redis.call('HSET', KEYS[9], 'job', ARGV[1], 'digest', ARGV[21])
  redis.call('EXPIRE', KEYS[9], ARGV[8])
  f[#f + 1] = 'idem_key'
  f[#f + 1] = KEYS[9]
end
-- Straight onto the stream while this tenant has no backlog and few entries wait there;
-- else into its wait set (by priority, then submit order), which workers feed from fairly
-- (feed.lua).
if redis.call('ZCARD', KEYS[11]) == 0 and ready_count(KEYS[2], ARGV[23]) < tonumber(ARGV[22]) then
  local entry = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
  redis.call('HSET', KEYS[6], entry, ARGV[1])
  f[#f + 1] = 'entry_id'
  f[#f + 1] = entry
else
  -- Scores stay exact: seq < 2^40, ranks 0..2.
  -- No TTL on the wait set: an id whose job expires in it is counted as expired when
  -- feed.lua pops it (an expiring set would take its ids out of the count for good).
  -- A job without entry_id that is not waiting for a retry is in this set: a cancel
  -- takes it out from there.
  redis.call('ZADD', KEYS[11], tonumber(ARGV[24]) * 1099511627776 + seq, ARGV[1])
  if not redis.call('LPOS', KEYS[10], KEYS[11]) then redis.call('RPUSH', KEYS[10], KEYS[11]) end
end
if ARGV[7] ~= '' then
  f[#f + 1] = 'metadata'
  f[#f + 1] = ARGV[7]
end
if ARGV[15] ~= '' then
  f[#f + 1] = 'webhook'
  f[#f + 1] = ARGV[15]
  f[#f + 1] = 'webhook_events'
  f[#f + 1] = ARGV[16]
end
input_fields(f, ARGV[3])
redis.call('HSET', KEYS[1], unpack(f))
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('HINCRBY', KEYS[4], model .. ':queued', 1)
redis.call('HINCRBY', KEYS[4], model .. ':submitted', 1)
-- The index lists ids in time order (score 0, lexical order = creation order), at most
-- index_cap of them, none older than any job can live. ZADD and ZCARD are cheap; the trims
-- run when the index is over its cap, and the time cut also every 64th submit of the
-- model (ids older than the cutoff point at expired jobs: list.lua skips those).
redis.call('ZADD', KEYS[5], 0, ARGV[1])
local extra = redis.call('ZCARD', KEYS[5]) - tonumber(ARGV[12])
if extra > 0 or seq % 64 == 0 then
  redis.call('ZREMRANGEBYLEX', KEYS[5], '-', '(' .. ARGV[13])
  extra = redis.call('ZCARD', KEYS[5]) - tonumber(ARGV[12])
  if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[5], 0, extra - 1) end
end
redis.call('EXPIRE', KEYS[5], ARGV[14])
return {'queued', seq - head, now}

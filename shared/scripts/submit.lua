-- submit: (none) -> queued. Checks the tenant's limits, then creates the job hash (with
-- its input inside, lib.lua's input_fields) and either its stream entry or its place in
-- the tenant's wait list (fair share: see feed.lua). A refused submit changes nothing (at
-- most, a model's queued count that had no field yet reads 0: see the limits below).
-- KEYS: 1 job hash, 2 model stream, 3 queues hash, 4 stats hash, 5 tenant index,
--       6 entries hash, 7 tenant active set, 8 tenant rate bucket, 9 idempotency record
--       (or the job hash again when there is no Idempotency-Key), 10 model's waiting
--       list (of wait set keys), 11 this tenant's wait set for this model, 12 the tenant's
--       kept list, 13 its byte sum (lib.lua's keep_finished)
-- ARGV: 1 id, 2 model, 3 input (msgpack), 4 tenant, 5 request_id ('': req_<id>), 6 priority,
--       7 metadata (JSON text or ""), 8 queue_ttl_s, 9 result_ttl_s, 10 timeout_s,
--       11 max_attempts, 12 index_cap, 13 index_ttl_s, 14 webhook URL (or ""),
--       15 webhook events (or ""), 16 max_active ("0": no limit), 17 rate per second
--       ("0": no limit), 18 burst, 19 max queued for the model ("0": no limit), 20 request
--       digest for the Idempotency-Key ("" when none), 21 ready target, 22 group,
--       23 priority rank (0 high, 1 normal, 2 low), 24 job key prefix ("{fleet}:job:"),
--       25 tomb_s (seconds the job's tombstone outlives its finished keys; "0": none),
--       26 max_finished ("0": no limit), 27 max_bytes ("0": no limit), 28 result key suffix
--       (":result"), 29 tombstone key prefix ("{fleet}:gone:")
-- Returns {'queued', queue_position, created_ms} | {'replay', job id}
--       | {'limit', what, retry_after_ms}. Errors: IDEMPOTENCY.
--
-- Redis' CPU per submit is much the cost of each redis.call and of turning numbers into
-- text, besides the commands themselves: so a submit into a tenant's backlog makes 10
-- calls, 11 when it is its tenant's first in its millisecond (docs/redis.md, "Scripts"),
-- every number it writes goes as text (ARGV's numbers stay text unless compared; the ones
-- it makes are formatted with %d, not with Redis' %.17g), and a limit that is off ("0")
-- costs nothing.
local job_key, stream_key, queues_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local index_key, entries_key, active_key, bucket_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local idem_key, waiting_key, wait_key = KEYS[9], KEYS[10], KEYS[11]
local id, model, input, tenant, request_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local priority, metadata, queue_ttl_s, result_ttl_s = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local timeout_s, max_attempts, index_cap = ARGV[10], ARGV[11], ARGV[12]
local index_ttl_s, webhook, webhook_events = ARGV[13], ARGV[14], ARGV[15]
local max_active, rate, burst = ARGV[16], ARGV[17], ARGV[18]
local max_queue, digest, ready_target = ARGV[19], ARGV[20], ARGV[21]
local group, rank, job_prefix, tomb_s = ARGV[22], ARGV[23], ARGV[24], ARGV[25]
local kept_key, kept_bytes_key = KEYS[12], KEYS[13]
local result_suffix, gone_prefix = ARGV[28], ARGV[29]
-- The limits as numbers; one that is off ("0") is not converted.
local function limit_of(v) return v ~= '0' and tonumber(v) or 0 end
local active_max, rate_n, queue_max = limit_of(max_active), limit_of(rate), limit_of(max_queue)
local finished_max, bytes_max = limit_of(ARGV[26]), limit_of(ARGV[27])
-- Redis' clock in milliseconds as text (lib.lua's now_ms as digits, not a number).
local t = redis.call('TIME')
local now = t[1] .. string.sub('00000' .. t[2], -6, -4)
local has_idem = digest ~= ''
if has_idem then
  local rec = redis.call('HMGET', idem_key, 'job', 'digest')
  if rec[1] and redis.call('EXISTS', job_prefix .. rec[1]) == 0 then
    -- The job it named has expired (the record expires with it; this covers a record
    -- left from before that): the key is free again, and this is a fresh submit.
    redis.call('DEL', idem_key)
  elseif rec[1] then
    if rec[2] ~= digest then
      return redis.error_reply('IDEMPOTENCY this Idempotency-Key was used with a different request')
    end
    return {'replay', rec[1]}
  end
end
-- No check that job_key is free: the gateway makes the id with 80 random bits
-- (fleet_id_new), so it names no job yet.
-- Limits, checked before anything stays written; a limit that is off costs no call.
if active_max > 0 then
  redis.call('ZREMRANGEBYSCORE', active_key, '-inf', now) -- ids whose job has expired
  if redis.call('ZCARD', active_key) >= active_max then
    return {'limit', 'active', 1000}
  end
end
-- The model's queued count goes up first and its new value is the check (one call where
-- a read and an increment were two); a refusal below takes the increment back.
local queued_field = model .. ':queued'
local queued = redis.call('HINCRBY', stats_key, queued_field, '1')
if queue_max > 0 and queued > queue_max then
  redis.call('HINCRBY', stats_key, queued_field, '-1')
  return {'limit', 'queue', 1000}
end
local tokens, burst_n
if rate_n > 0 then
  local now_n
  burst_n, now_n = tonumber(burst), tonumber(now)
  local b = redis.call('HMGET', bucket_key, 'tokens', 'ms')
  tokens = tonumber(b[1] or burst_n)
  local last = tonumber(b[2] or now_n)
  tokens = math.min(burst_n, tokens + (now_n - last) * rate_n / 1000)
  if tokens < 1 then
    redis.call('HINCRBY', stats_key, queued_field, '-1')
    return {'limit', 'rate', math.ceil((1 - tokens) * 1000 / rate_n)}
  end
end
-- Accepted.
if tokens then
  redis.call('HSET', bucket_key, 'tokens', tostring(tokens - 1), 'ms', now)
  redis.call('PEXPIRE', bucket_key, math.ceil(burst_n * 1000 / rate_n) + 60000)
end
-- Storage limits (docs/api.md, "Storage limits"): while the tenant's finished jobs are
-- more than max_finished or hold more than max_bytes, the oldest go (their hash, result,
-- partial outputs, Idempotency-Key record and tombstone; counted per model in <model>:evicted). An entry
-- whose job no longer ended at that moment (retried since, deleted, expired) is dropped
-- without touching the job. At most EVICT_MAX entries per submit bound the script's time
-- after a limit was lowered: the next submits go on.
if finished_max > 0 or bytes_max > 0 then
  local EVICT_MAX = 100
  local n = redis.call('LLEN', kept_key)
  local total = tonumber(redis.call('GET', kept_bytes_key) or '0')
  local popped = 0
  while n > 0 and popped < EVICT_MAX and
        ((finished_max > 0 and n > finished_max) or (bytes_max > 0 and total > bytes_max)) do
    local e = redis.call('LPOP', kept_key)
    n, popped = n - 1, popped + 1
    local eid, ems, esz = string.match(e, '^(%S+) (%d+) (%d+)$')
    if eid then
      total = redis.call('DECRBY', kept_bytes_key, esz)
      local jk = job_prefix .. eid
      local h = redis.call('HMGET', jk, 'status', 'finished_ms', 'model', 'idem_key')
      if h[2] == ems and (h[1] == 'succeeded' or h[1] == 'failed' or h[1] == 'cancelled') then
        if h[4] and redis.call('HGET', h[4], 'job') == eid then redis.call('DEL', h[4]) end
        redis.call('DEL', jk, jk .. result_suffix, jk .. OUTPUTS_SUFFIX)
        redis.call('HDEL', gone_prefix .. string.sub(eid, 1, GONE_BUCKET), eid)
        redis.call('HINCRBY', stats_key, h[3] .. ':evicted', 1)
      end
    end
  end
end
-- The active set is kept only for a tenant with a max_active limit (docs/redis.md: a
-- limit switched on later counts the jobs submitted from then on).
if active_max > 0 then
  local until_ms = tonumber(now) + tonumber(queue_ttl_s) * 1000
  redis.call('ZADD', active_key, string.format('%d', until_ms), id)
  redis.call('EXPIRE', active_key, string.format('%d', queue_ttl_s + result_ttl_s))
end
local seq = redis.call('HINCRBY', queues_key, model .. ':seq', '1')
local seq_s = string.format('%d', seq)
local head = redis.call('HGET', queues_key, model .. ':head')
-- The hash holds only the fields that say something (docs/redis.md, "The job hash"): no
-- id (its key names the job), no updated_ms until an update (created_ms stands for it),
-- no attempts while none was made, and none of priority, max_attempts, ttl_s,
-- queue_ttl_s, timeout_s, tomb_s that holds lib.lua's default. Together 192 B of a queued job's
-- 728-byte hash (MEMORY USAGE, a 200-byte input; docs/benchmarks.md).
local f = {'status', 'queued', 'model', model, 'tenant', tenant, 'created_ms', now,
  'queue_seq', seq_s}
if request_id ~= '' then -- '' when the request's id is 'req_' and this job's id
  f[#f + 1] = 'request_id'
  f[#f + 1] = request_id
end
local function unless_default(name, v, default)
  if v ~= default then
    f[#f + 1] = name
    f[#f + 1] = v
  end
end
unless_default('priority', priority, DEFAULT_PRIORITY)
unless_default('max_attempts', max_attempts, DEFAULT_MAX_ATTEMPTS)
unless_default('ttl_s', result_ttl_s, DEFAULT_TTL_S)
unless_default('queue_ttl_s', queue_ttl_s, DEFAULT_TTL_S)
unless_default('timeout_s', timeout_s, DEFAULT_TIMEOUT_S)
-- read by end_job, which workers run: the gateway's FLEET_TOMBSTONE_S travels with the job
unless_default('tomb_s', tomb_s, DEFAULT_TOMB_S)
if active_max > 0 then
  f[#f + 1] = 'active' -- in the active set: end_job takes it out
  f[#f + 1] = '1'
end
if finished_max > 0 or bytes_max > 0 then
  f[#f + 1] = 'keep' -- its input's bytes: end_job puts it on the tenant's kept list
  f[#f + 1] = string.format('%d', #input)
end
if has_idem then
  -- The record lives exactly as long as the job: every script that moves the job's TTL
  -- moves the record's with it (expire_job, through the job's idem_key field).
  redis.call('HSET', idem_key, 'job', id, 'digest', digest)
  redis.call('EXPIRE', idem_key, queue_ttl_s)
  f[#f + 1] = 'idem_key'
  f[#f + 1] = idem_key
end
-- Straight onto the stream while this tenant has no backlog and few entries wait there;
-- else onto its wait list for the job's rank, which workers feed from fairly (lib.lua's
-- enqueue, which retry.lua shares).
local stem = string.sub(wait_key, 1, -2) -- "{fleet}:wait:<model>:<tenant>:"
local entry = enqueue(stream_key, entries_key, waiting_key, stem, rank, id, group,
  tonumber(ready_target), tenant)
if entry then
  f[#f + 1] = 'entry_id'
  f[#f + 1] = entry
end
if metadata ~= '' then
  f[#f + 1] = 'metadata'
  f[#f + 1] = metadata
end
if webhook ~= '' then
  f[#f + 1] = 'webhook'
  f[#f + 1] = webhook
  f[#f + 1] = 'webhook_events'
  f[#f + 1] = webhook_events
end
input_fields(f, input)
redis.call('HSET', job_key, unpack(f))
redis.call('EXPIRE', job_key, queue_ttl_s)
redis.call('HINCRBY', stats_key, model .. ':submitted', '1')
-- The tenant's index (list.lua reads it) is a stream: one entry {j = id} per submit, in
-- submit order, one call. MAXLEN ~ keeps at most about index_cap entries on every submit
-- (approximate: Redis drops whole nodes, so it may keep up to a node more); the time cut
-- (entries older than any job can live point at expired jobs, which list.lua skips) is an
-- XTRIM MINID ~ every 64th submit of the model (its queue_seq).
local entry_id = redis.call('XADD', index_key, 'MAXLEN', '~', index_cap, '*', 'j', id)
if seq % 64 == 0 then
  local cutoff = tonumber(now) - tonumber(index_ttl_s) * 1000
  if cutoff > 0 then redis.call('XTRIM', index_key, 'MINID', '~', string.format('%d', cutoff)) end
end
-- The index must outlive its newest job: a submit sets its TTL when its entry is the
-- first of its millisecond (id "<ms>-0"; a new stream's first entry always is). An entry
-- "<ms>-<n>", n > 0, is only made while the clock reads at most <ms>, after the entry
-- "<ms>-0" of the same stream set the TTL when the clock read <ms>: the TTL already
-- reaches index_ttl_s past now. Under load (many submits of a tenant per millisecond)
-- that saves most of the EXPIRE calls.
if string.sub(entry_id, -2) == '-0' then redis.call('EXPIRE', index_key, index_ttl_s) end
return {'queued', seq - tonumber(head or '0'), tonumber(now)}

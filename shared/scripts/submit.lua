-- submit: (none) -> queued. Creates the job hash, its input, the stream entry.
-- KEYS: 1 job hash, 2 input, 3 model stream, 4 queues hash, 5 stats hash, 6 tenant index,
--       7 entries hash
-- ARGV: 1 id, 2 model, 3 input (msgpack), 4 tenant, 5 request_id, 6 priority,
--       7 metadata (JSON text or ""), 8 queue_ttl_s, 9 result_ttl_s, 10 timeout_s,
--       11 max_attempts, 12 index_cap, 13 index_cutoff (id time prefix), 14 index_ttl_s,
--       15 webhook URL (or ""), 16 webhook events (or "")
-- Returns {queue_position, created_ms}. Errors: DUPLICATE.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('DUPLICATE job id already exists')
end
local now = now_ms()
local model = ARGV[2]
local seq = redis.call('HINCRBY', KEYS[4], model .. ':seq', 1)
local head = tonumber(redis.call('HGET', KEYS[4], model .. ':head') or '0')
local entry = redis.call('XADD', KEYS[3], '*', 'job', ARGV[1])
redis.call('HSET', KEYS[7], entry, ARGV[1])
redis.call('HSET', KEYS[1],
  'id', ARGV[1], 'status', 'queued', 'model', model, 'tenant', ARGV[4],
  'request_id', ARGV[5], 'priority', ARGV[6], 'created_ms', now, 'updated_ms', now,
  'attempts', 0, 'max_attempts', ARGV[11], 'queue_seq', seq, 'entry_id', entry,
  'ttl_s', ARGV[9], 'timeout_s', ARGV[10], 'queue_ttl_s', ARGV[8])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'metadata', ARGV[7]) end
if ARGV[15] ~= '' then
  redis.call('HSET', KEYS[1], 'webhook', ARGV[15], 'webhook_events', ARGV[16])
end
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[8])
redis.call('HINCRBY', KEYS[5], model .. ':queued', 1)
redis.call('HINCRBY', KEYS[5], model .. ':submitted', 1)
-- The index lists ids in time order (score 0, lexical order = creation order). Drop ids
-- older than any job can live, and keep at most index_cap of them.
redis.call('ZADD', KEYS[6], 0, ARGV[1])
redis.call('ZREMRANGEBYLEX', KEYS[6], '-', '(' .. ARGV[13])
local extra = redis.call('ZCARD', KEYS[6]) - tonumber(ARGV[12])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[6], 0, extra - 1) end
redis.call('EXPIRE', KEYS[6], ARGV[14])
return {seq - head, now}

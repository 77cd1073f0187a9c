-- dlq_retry: failed (dead-lettered) -> queued with its attempts reset: an operator's
-- "fleetctl dlq retry". The dead-letter entry is deleted; the job keeps its id. The job
-- leaves the failed count for the queued one (submitted stays: it is the same job).
-- KEYS: 1 job hash, 2 result, 3 model stream, 4 queues hash, 5 stats hash,
--       6 entries hash, 7 dead-letter stream
-- ARGV: 1 job id, 2 model, 3 events channel
-- Returns {'queued', queue_position} | {'missing'} | {'not_dead', status}
local st = redis.call('HMGET', KEYS[1], 'status', 'dead_lettered', 'model', 'queue_ttl_s',
  'dlq_entry')
if not st[1] or st[3] ~= ARGV[2] then
  return {'missing'}
end
if st[1] ~= 'failed' or st[2] ~= '1' then return {'not_dead', st[1]} end
local model = ARGV[2]
local now = now_ms()
local entry = redis.call('XADD', KEYS[3], '*', 'job', ARGV[1])
local seq = redis.call('HINCRBY', KEYS[4], model .. ':seq', 1)
local head = tonumber(redis.call('HGET', KEYS[4], model .. ':head') or '0')
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0, 'entry_id', entry,
  'queue_seq', seq, 'updated_ms', now)
redis.call('HDEL', KEYS[1], 'dead_lettered', 'dlq_entry', 'error', 'finished_ms',
  'started_ms', 'worker', 'cancel_requested')
redis.call('HSET', KEYS[6], entry, ARGV[1])
if st[5] then redis.call('XDEL', KEYS[7], st[5]) end
redis.call('DEL', KEYS[2])
expire_job(KEYS[1], tonumber(st[4] or '86400'))
redis.call('HINCRBY', KEYS[5], model .. ':failed', -1)
redis.call('HINCRBY', KEYS[5], model .. ':queued', 1)
redis.call('HINCRBY', KEYS[5], model .. ':dlq_retried', 1)
redis.call('PUBLISH', ARGV[3], ARGV[1] .. ' queued')
return {'queued', seq - head}

-- dlq_retry: failed (dead-lettered) -> queued with its attempts reset: an operator's
-- "fleetctl dlq retry". The dead-letter entry is deleted; the job keeps its id. The job
-- leaves the failed count for the queued one (submitted stays: it is the same job).
-- KEYS: 1 job hash, 2 result, 3 model stream, 4 queues hash, 5 stats hash,
--       6 entries hash, 7 dead-letter stream
-- ARGV: 1 job id, 2 model, 3 events channel
-- Returns {'queued', queue_position} | {'missing'} | {'not_dead', status}
local job_key, result_key, stream_key, queues_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local stats_key, entries_key, dlq_key = KEYS[5], KEYS[6], KEYS[7]
local id, model, channel = ARGV[1], ARGV[2], ARGV[3]
local st = redis.call('HMGET', job_key, 'status', 'dead_lettered', 'model', 'queue_ttl_s',
  'dlq_entry')
if not st[1] or st[3] ~= model then
  return {'missing'}
end
if st[1] ~= 'failed' or st[2] ~= '1' then return {'not_dead', st[1]} end
local now = now_ms()
local entry = redis.call('XADD', stream_key, '*', 'job', id)
local seq = redis.call('HINCRBY', queues_key, model .. ':seq', 1)
local head = tonumber(redis.call('HGET', queues_key, model .. ':head') or '0')
redis.call('HSET', job_key, 'status', 'queued', 'attempts', 0, 'entry_id', entry,
  'queue_seq', seq, 'updated_ms', now)
redis.call('HDEL', job_key, 'dead_lettered', 'dlq_entry', 'error', 'finished_ms',
  'started_ms', 'worker', 'cancel_requested')
redis.call('HSET', entries_key, entry, id)
if st[5] then redis.call('XDEL', dlq_key, st[5]) end
redis.call('DEL', result_key)
expire_job(job_key, ttl_of(st[4]))
redis.call('HINCRBY', stats_key, model .. ':failed', -1)
redis.call('HINCRBY', stats_key, model .. ':queued', 1)
redis.call('HINCRBY', stats_key, model .. ':dlq_retried', 1)
redis.call('PUBLISH', channel, id .. ' queued')
return {'queued', seq - head}

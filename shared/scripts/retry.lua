-- retry: failed | cancelled -> queued under the same id, as if submitted again: POST
-- /v1/jobs/{id}/retry (a tenant's own job) and fleetctl dlq retry (dead_only: only a job
-- on the dead-letter stream). The attempts start over and what the earlier run left goes
-- (progress, error, last_error, the lease, finished_ms, the result, the partial outputs);
-- the job joins its model's queue the way a submit does (the stream, or its tenant's wait
-- list of its rank when the tenant has a backlog or enough entries wait: lib.lua's
-- enqueue) and its keys get the queue TTL again. Its dead-letter entry, if any, is
-- deleted. A succeeded job is not retried (its result stands: submit it again), nor a
-- queued or running one.
-- The counters move the job from its final status to queued; submitted stays (it is the
-- same job), so submitted = queued + running + succeeded + failed + cancelled + expired
-- holds throughout.
-- KEYS: 1 job hash, 2 result, 3 queues hash, 4 stats hash, 5 dead-letter stream,
--       6 tenant index, 7 the bucket of the job's tombstone (its end wrote it: gone until it
--       ends again)
-- ARGV: 1 tenant (the job's: another tenant's job reads as missing), 2 job id, 3 events
--       channel, 4 group, 5 ready target, 6 stream key prefix ("{fleet}:stream:"),
--       7 entries hash key prefix, 8 waiting list key prefix ("{fleet}:waiting:"),
--       9 wait list key prefix ("{fleet}:wait:"), 10 active set key prefix, 11 max_active
--       ("0": no limit), 12 max queued for the model ("0": no limit), 13 dead_only ("1":
--       only a dead-lettered job), 14 index TTL in seconds
-- Returns {'queued', queue_position} | {'missing'} | {'refused', status}
--       | {'not_dead', status} | {'limit', what, retry_after_ms}
local job_key, result_key, queues_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dlq_key, index_key, gone_key = KEYS[5], KEYS[6], KEYS[7]
local tenant, id, channel, group, target = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local stream_prefix, entries_prefix, waiting_prefix = ARGV[6], ARGV[7], ARGV[8]
local wait_prefix, active_prefix, max_active, max_queue = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local dead_only, index_ttl_s = ARGV[13], ARGV[14]
local st = redis.call('HMGET', job_key, 'status', 'tenant', 'model', 'priority',
  'dead_lettered', 'dlq_entry', 'queue_ttl_s', 'idem_key', 'ttl_s')
local status, model = st[1], st[3]
if not status or st[2] ~= tenant or not model then return {'missing'} end
if dead_only == '1' and (status ~= 'failed' or st[5] ~= '1') then return {'not_dead', status} end
if status ~= 'failed' and status ~= 'cancelled' then return {'refused', status} end
local queue_ttl = ttl_of(st[7])
-- The limits a submit checks, but the rate: a retry is no new job.
local active_key = active_prefix .. tenant
local now = now_ms()
local active_max = tonumber(max_active)
if active_max > 0 then
  redis.call('ZREMRANGEBYSCORE', active_key, '-inf', now) -- ids whose job has expired
  if redis.call('ZCARD', active_key) >= active_max then return {'limit', 'active', 1000} end
end
local queued_field = model .. ':queued'
local queued = redis.call('HINCRBY', stats_key, queued_field, 1)
local queue_max = tonumber(max_queue)
if queue_max > 0 and queued > queue_max then
  redis.call('HINCRBY', stats_key, queued_field, -1)
  return {'limit', 'queue', 1000}
end
-- Accepted: the job leaves its final status for queued (the increment above).
redis.call('HINCRBY', stats_key, model .. ':' .. status, -1)
redis.call('HDEL', job_key, 'attempts', 'error', 'last_error', 'finished_ms', 'started_ms',
  'worker', 'lease', 'lease_until_ms', 'cancel_requested', 'retry_at_ms', 'entry_id',
  'dead_lettered', 'dlq_entry', 'progress_percent', 'progress_message', 'progress_done',
  'progress_total', 'active', 'out_n', 'out_bytes', 'out_hook_ms')
redis.call('DEL', result_key, job_key .. OUTPUTS_SUFFIX) -- its partial outputs go too
redis.call('HDEL', gone_key, id)
if st[6] then redis.call('XDEL', dlq_key, st[6]) end
if st[5] == '1' then redis.call('HINCRBY', stats_key, model .. ':dlq_retried', 1) end
local seq = redis.call('HINCRBY', queues_key, model .. ':seq', 1)
local head = tonumber(redis.call('HGET', queues_key, model .. ':head') or '0')
local f = {'status', 'queued', 'queue_seq', string.format('%d', seq), 'updated_ms', now}
if active_max > 0 then
  redis.call('ZADD', active_key, string.format('%d', now + queue_ttl * 1000), id)
  redis.call('EXPIRE', active_key, string.format('%d', queue_ttl + ttl_of(st[9])))
  f[#f + 1] = 'active'
  f[#f + 1] = '1'
end
local rank = st[4] == 'high' and '0' or st[4] == 'low' and '2' or '1'
local entry = enqueue(stream_prefix .. model, entries_prefix .. model, waiting_prefix .. model,
  wait_prefix .. model .. ':' .. tenant .. ':', rank, id, group, tonumber(target), tenant)
if entry then
  f[#f + 1] = 'entry_id'
  f[#f + 1] = entry
end
redis.call('HSET', job_key, unpack(f))
expire_job(job_key, queue_ttl, st[8] or false)
-- The tenant's index must outlive the job again (list.lua finds it there).
redis.call('EXPIRE', index_key, index_ttl_s, 'GT')
redis.call('PUBLISH', channel, id .. ' queued')
return {'queued', math.max(seq - head, 1)}

-- requeue: running -> queued, to run again after delay_ms (the job waits in the delayed
-- set; promote puts it back on the stream). Only the current lease may requeue. Two kinds:
--   retry     a retryable model error: it used an attempt; once max_attempts are used
--             the job fails instead and is dead-lettered
--   handback  the worker is shutting down: the attempt does not count
-- A job whose cancel was requested ends cancelled instead.
-- KEYS: 1 job hash, 2 model stream, 3 delayed set, 4 stats hash, 5 entries hash,
--       6 dead-letter stream, 7 webhook task stream
-- ARGV: 1 token, 2 delay_ms, 3 kind, 4 error (retry), 5 group, 6 model, 7 events channel,
--       8 job id, 9 dead-letter cap, 10 webhook delivery key prefix, 11 active set key prefix,
--       12 tombstone key prefix ("{fleet}:gone:"), 13 kept list key prefix ("{fleet}:kept:")
-- Returns {'queued', retry_at_ms} | {'dead', error} | {'cancelled'} | {'stale'}
local job_key, stream_key, delayed_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local entries_key, dlq_key, tasks_key = KEYS[5], KEYS[6], KEYS[7]
local token, delay_ms, kind, err = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local group, model, channel, id = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local dlq_cap, delivery_prefix, active_prefix = ARGV[9], ARGV[10], ARGV[11]
hooks.active_prefix, hooks.gone_prefix, hooks.kept_prefix = active_prefix, ARGV[12], ARGV[13]
hooks.tasks, hooks.delivery_prefix, hooks.channel = tasks_key, delivery_prefix, channel
local st = redis.call('HMGET', job_key, 'status', 'lease', 'attempts', 'max_attempts',
  'cancel_requested', 'entry_id', 'queue_ttl_s')
if st[1] ~= 'running' or st[2] ~= token then return {'stale'} end
local now = now_ms()
drop_entry(stream_key, group, entries_key, st[6])
if st[5] == '1' then
  cancel_running(job_key, stats_key, model, now, channel, id)
  return {'cancelled'}
end
local attempts, max = tonumber(st[3] or '0'), tonumber(st[4] or DEFAULT_MAX_ATTEMPTS)
if kind == 'retry' then
  if attempts >= max then
    local why = string.format('failed %d times with a retryable error; not retried (last: %s)',
      attempts, err)
    fail_dead(job_key, stats_key, dlq_key, dlq_cap, model, id, why, now, channel)
    return {'dead', why}
  end
  redis.call('HSET', job_key, 'last_error', string.format('attempt %d: %s', attempts, err))
  redis.call('HINCRBY', stats_key, model .. ':retried', 1)
else
  redis.call('HINCRBY', job_key, 'attempts', -1)
  redis.call('HINCRBY', stats_key, model .. ':handed_back', 1)
end
local at = now + delay_ms
redis.call('HSET', job_key, 'status', 'queued', 'retry_at_ms', at, 'updated_ms', now)
redis.call('HDEL', job_key, 'lease', 'lease_until_ms', 'entry_id', 'worker', 'started_ms',
  'progress_percent', 'progress_message', 'progress_done', 'progress_total')
redis.call('ZADD', delayed_key, at, id)
expire_job(job_key, ttl_of(st[7]))
redis.call('HINCRBY', stats_key, model .. ':running', -1)
redis.call('HINCRBY', stats_key, model .. ':queued', 1)
redis.call('PUBLISH', channel, id .. ' queued')
return {'queued', at}

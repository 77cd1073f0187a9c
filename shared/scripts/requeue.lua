-- requeue: running -> queued, to run again after delay_ms (the job waits in the delayed
-- set; promote puts it back on the stream). Only the current lease may requeue. Two kinds:
--   retry     a retryable model error: it used an attempt; once max_attempts are used
--             the job fails instead and is dead-lettered
--   handback  the worker is shutting down: the attempt does not count
-- A job whose cancel was requested ends cancelled instead.
-- KEYS: 1 job hash, 2 model stream, 3 delayed set, 4 stats hash, 5 entries hash,
--       6 dead-letter stream, 7 webhook task stream
-- ARGV: 1 token, 2 delay_ms, 3 kind, 4 error (retry), 5 group, 6 model, 7 events channel,
--       8 job id, 9 dead-letter cap, 10 webhook delivery key prefix, 11 active set key prefix
-- Returns {'queued', retry_at_ms} | {'dead', error} | {'cancelled'} | {'stale'}
hooks.active_prefix = ARGV[11]
hooks.tasks, hooks.delivery_prefix, hooks.channel = KEYS[7], ARGV[10], ARGV[7]
local st = redis.call('HMGET', KEYS[1], 'status', 'lease', 'attempts', 'max_attempts',
  'cancel_requested', 'entry_id', 'queue_ttl_s')
if st[1] ~= 'running' or st[2] ~= ARGV[1] then return {'stale'} end
local model = ARGV[6]
local now = now_ms()
drop_entry(KEYS[2], ARGV[5], KEYS[5], st[6])
if st[5] == '1' then
  end_job(KEYS[1], KEYS[4], model, 'running', 'cancelled',
    'cancelled by the client while running', now, ARGV[7], ARGV[8])
  return {'cancelled'}
end
local attempts, max = tonumber(st[3] or '0'), tonumber(st[4] or '3')
if ARGV[3] == 'retry' then
  if attempts >= max then
    local err = string.format('failed %d times with a retryable error; not retried (last: %s)',
      attempts, ARGV[4])
    end_job(KEYS[1], KEYS[4], model, 'running', 'failed', err, now, ARGV[7], ARGV[8])
    dead_letter(KEYS[6], ARGV[9], KEYS[1], KEYS[4], model, ARGV[8], err, now)
    return {'dead', err}
  end
  redis.call('HSET', KEYS[1], 'last_error', string.format('attempt %d: %s', attempts, ARGV[4]))
  redis.call('HINCRBY', KEYS[4], model .. ':retried', 1)
else
  redis.call('HINCRBY', KEYS[1], 'attempts', -1)
  redis.call('HINCRBY', KEYS[4], model .. ':handed_back', 1)
end
local at = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'queued', 'retry_at_ms', at, 'updated_ms', now)
redis.call('HDEL', KEYS[1], 'lease', 'lease_until_ms', 'entry_id', 'worker', 'started_ms',
  'progress_percent', 'progress_message', 'progress_done', 'progress_total')
redis.call('ZADD', KEYS[3], at, ARGV[8])
expire_job(KEYS[1], tonumber(st[7] or '86400'))
redis.call('HINCRBY', KEYS[4], model .. ':running', -1)
redis.call('HINCRBY', KEYS[4], model .. ':queued', 1)
redis.call('PUBLISH', ARGV[7], ARGV[8] .. ' queued')
return {'queued', at}

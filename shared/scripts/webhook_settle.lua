#!lua flags=allow-oom
-- webhook_settle: records the outcome of one delivery attempt of a gateway and takes the
-- task off the stream (XACK + XDEL). Outcomes:
--   delivered  2xx: done; the delivery hash is deleted
--   retry      to be sent again at due_ms: the message waits in the retry set
--   failed     410, another 4xx, refused by the SSRF guard, or out of attempts: recorded on
--              the webhook dead-letter stream (capped); the delivery hash is deleted
-- The job (if it still exists) shows the latest delivery: webhook_state, webhook_attempts,
-- webhook_last_status. The body the gateway built on the first attempt is kept for the
-- retries (same webhook-id, same body).
-- KEYS: 1 delivery hash, 2 task stream, 3 retry set, 4 webhook dead-letter stream, 5 job hash
-- ARGV: 1 entry id, 2 group, 3 outcome, 4 due_ms, 5 HTTP status (0: none), 6 error, 7 body,
--       8 dead-letter cap, 9 consumer (the settling gateway)
-- Returns the delivery's attempts so far, or -1 when the entry is no longer this gateway's
-- (another one took it over while this attempt ran): nothing is written then.
local delivery_key, tasks_key, retry_key, dlq_key, job_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5]
local entry, group, outcome, due_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local http_status, err, body, cap, consumer = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]),
  ARGV[9]
local owner = redis.call('XPENDING', tasks_key, group, entry, entry, 1)
if #owner == 0 or owner[1][2] ~= consumer then return -1 end
redis.call('XACK', tasks_key, group, entry)
redis.call('XDEL', tasks_key, entry)
if redis.call('EXISTS', delivery_key) == 0 then return 0 end
local attempts = redis.call('HINCRBY', delivery_key, 'attempts', 1)
redis.call('HSET', delivery_key, 'last_status', http_status, 'last_error', err)
if body ~= '' then redis.call('HSET', delivery_key, 'body', body) end
local state = outcome == 'retry' and 'retrying' or outcome
if redis.call('EXISTS', job_key) == 1 then
  redis.call('HSET', job_key, 'webhook_state', state, 'webhook_attempts', attempts,
    'webhook_last_status', http_status)
  if err ~= '' then redis.call('HSET', job_key, 'webhook_last_error', err)
  else redis.call('HDEL', job_key, 'webhook_last_error') end
end
if outcome == 'retry' then
  redis.call('ZADD', retry_key, due_ms, redis.call('HGET', delivery_key, 'msg'))
  return attempts
end
if outcome == 'failed' then
  local d = redis.call('HMGET', delivery_key, 'msg', 'job', 'type', 'url')
  redis.call('XADD', dlq_key, 'MAXLEN', cap, '*', 'msg', d[1], 'job', d[2],
    'type', d[3], 'url', d[4], 'attempts', attempts, 'last_status', http_status, 'error', err,
    'failed_ms', now_ms())
end
redis.call('DEL', delivery_key)
return attempts

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
local owner = redis.call('XPENDING', KEYS[2], ARGV[2], ARGV[1], ARGV[1], 1)
if #owner == 0 or owner[1][2] ~= ARGV[9] then return -1 end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_status', ARGV[5], 'last_error', ARGV[6])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'body', ARGV[7]) end
local outcome = ARGV[3]
local state = outcome == 'retry' and 'retrying' or outcome
if redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('HSET', KEYS[5], 'webhook_state', state, 'webhook_attempts', attempts,
    'webhook_last_status', ARGV[5])
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[5], 'webhook_last_error', ARGV[6])
  else redis.call('HDEL', KEYS[5], 'webhook_last_error') end
end
if outcome == 'retry' then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[4]), redis.call('HGET', KEYS[1], 'msg'))
  return attempts
end
if outcome == 'failed' then
  local d = redis.call('HMGET', KEYS[1], 'msg', 'job', 'type', 'url')
  redis.call('XADD', KEYS[4], 'MAXLEN', tonumber(ARGV[8]), '*', 'msg', d[1], 'job', d[2],
    'type', d[3], 'url', d[4], 'attempts', attempts, 'last_status', ARGV[5], 'error', ARGV[6],
    'failed_ms', now_ms())
end
redis.call('DEL', KEYS[1])
return attempts

-- progress: running -> running, with new progress. Only the current lease may write.
-- KEYS: 1 job hash, 2 webhook task stream
-- ARGV: 1 token, 2 percent, 3 message, 4 done, 5 total, 6 events channel, 7 job id,
--       8 webhook delivery key prefix
-- Returns 'ok' | 'cancel' (written, and a cancel was requested) | 'stale'
hooks.tasks, hooks.delivery_prefix, hooks.channel = KEYS[2], ARGV[8], ARGV[6]
local st = redis.call('HMGET', KEYS[1], 'status', 'lease', 'cancel_requested')
if st[1] ~= 'running' or st[2] ~= ARGV[1] then return 'stale' end
local now = now_ms()
redis.call('HSET', KEYS[1], 'progress_percent', ARGV[2], 'progress_message', ARGV[3],
  'progress_done', ARGV[4], 'progress_total', ARGV[5], 'updated_ms', now)
redis.call('PUBLISH', ARGV[6], ARGV[7] .. ' progress')
webhook_event(KEYS[1], 'progress', 'job.progress', ARGV[7], now)
if st[3] == '1' then return 'cancel' end
return 'ok'

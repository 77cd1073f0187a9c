-- progress: running -> running, with new progress. Only the current lease may write.
-- KEYS: 1 job hash, 2 webhook task stream
-- ARGV: 1 token, 2 percent, 3 message, 4 done, 5 total, 6 events channel, 7 job id,
--       8 webhook delivery key prefix
-- Returns 'ok' | 'cancel' (written, and a cancel was requested) | 'stale'
local job_key, tasks_key = KEYS[1], KEYS[2]
local token, percent, message, done, total = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local channel, id, delivery_prefix = ARGV[6], ARGV[7], ARGV[8]
hooks.tasks, hooks.delivery_prefix, hooks.channel = tasks_key, delivery_prefix, channel
local st = redis.call('HMGET', job_key, 'status', 'lease', 'cancel_requested')
if st[1] ~= 'running' or st[2] ~= token then return 'stale' end
local now = now_ms()
redis.call('HSET', job_key, 'progress_percent', percent, 'progress_message', message,
  'progress_done', done, 'progress_total', total, 'updated_ms', now)
redis.call('PUBLISH', channel, id .. ' progress')
webhook_event(job_key, 'progress', 'job.progress', id, now)
if st[3] == '1' then return 'cancel' end
return 'ok'

-- finish: running -> succeeded | failed | cancelled. Only the current lease may write.
-- Stores the result, switches every key of the job to the result TTL, acknowledges and
-- deletes the job's stream entry (so the stream holds only undelivered and pending
-- entries).
-- KEYS: 1 job hash, 2 input, 3 result, 4 model stream, 5 stats hash, 6 entries hash,
--       7 webhook task stream
-- ARGV: 1 token, 2 status, 3 result (msgpack or ""), 4 error (or ""), 5 group, 6 model,
--       7 events channel, 8 job id, 9 webhook delivery key prefix, 10 active set key prefix
-- Returns 'ok' | 'stale'
hooks.active_prefix = ARGV[10]
hooks.tasks, hooks.delivery_prefix, hooks.channel = KEYS[7], ARGV[9], ARGV[7]
local st = redis.call('HMGET', KEYS[1], 'status', 'lease', 'entry_id')
if st[1] ~= 'running' or st[2] ~= ARGV[1] then return 'stale' end
local status = ARGV[2]
if status ~= 'succeeded' and status ~= 'failed' and status ~= 'cancelled' then
  return redis.error_reply('BADSTATUS ' .. status .. ' is not a final status')
end
local ttl = end_job(KEYS[1], KEYS[2], KEYS[5], ARGV[6], 'running', status, ARGV[4], now_ms(),
  ARGV[7], ARGV[8])
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', ttl) end
drop_entry(KEYS[4], ARGV[5], KEYS[6], st[3])
return 'ok'

-- cancel: queued -> cancelled at once (also while it waits for a retry); running -> cancel
-- requested: the worker is told on its control channel, stops the job at the model's next
-- step and finishes it as cancelled (a lost worker's job ends cancelled when reclaimed).
-- KEYS: 1 job hash, 2 input, 3 stats hash, 4 webhook task stream
-- ARGV: 1 tenant, 2 events channel, 3 job id, 4 control channel prefix ("{fleet}:control:"),
--       5 webhook delivery key prefix, 6 active set key prefix
-- Returns {'cancelled'} | {'requested'} | {'final', status} | {'missing'}
hooks.active_prefix = ARGV[6]
hooks.tasks, hooks.delivery_prefix, hooks.channel = KEYS[4], ARGV[5], ARGV[2]
local st = redis.call('HMGET', KEYS[1], 'status', 'tenant', 'model', 'worker')
if not st[1] or st[2] ~= ARGV[1] then return {'missing'} end
local now = now_ms()
if st[1] == 'queued' then
  -- Its stream entry (or delayed-set id) stays: the claim (or promote) drops it.
  end_job(KEYS[1], KEYS[2], KEYS[3], st[3], 'queued', 'cancelled',
    'cancelled by the client before it started', now, ARGV[2], ARGV[3])
  return {'cancelled'}
end
if st[1] == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1', 'updated_ms', now)
  redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' cancelling')
  if st[4] then redis.call('PUBLISH', ARGV[4] .. st[4], 'cancel ' .. ARGV[3]) end
  return {'requested'}
end
return {'final', st[1]}

-- cancel: queued -> cancelled at once (also while it waits for a retry); running -> cancel
-- requested: the worker is told on its control channel, stops the job at the model's next
-- step and finishes it as cancelled (a lost worker's job ends cancelled when reclaimed).
-- KEYS: 1 job hash, 2 stats hash, 3 webhook task stream
-- ARGV: 1 tenant, 2 events channel, 3 job id, 4 control channel prefix ("{fleet}:control:"),
--       5 webhook delivery key prefix, 6 active set key prefix, 7 stream key prefix
--       ("{fleet}:stream:"), 8 entries hash key prefix, 9 delayed set key prefix, 10 group,
--       11 wait set key prefix ("{fleet}:wait:"; a wait set is that, the model, ':', the
--       tenant)
-- Returns {'cancelled'} | {'requested'} | {'final', status} | {'missing'}
hooks.active_prefix = ARGV[6]
hooks.tasks, hooks.delivery_prefix, hooks.channel = KEYS[3], ARGV[5], ARGV[2]
local st = redis.call('HMGET', KEYS[1], 'status', 'tenant', 'model', 'worker', 'entry_id')
if not st[1] or st[2] ~= ARGV[1] then return {'missing'} end
local now = now_ms()
if st[1] == 'queued' then
  -- Its stream entry, delayed-set id or wait-set id goes now: left there, it would be
  -- counted as expired when found after the cancelled job's keys expired, a second count
  -- of one job. A worker that has read the entry but not claimed it yet finds the job
  -- cancelled and drops it (claim.lua).
  local model = st[3]
  drop_entry(ARGV[7] .. model, ARGV[10], ARGV[8] .. model, st[5])
  redis.call('ZREM', ARGV[9] .. model, ARGV[3])
  if not st[5] then redis.call('ZREM', ARGV[11] .. model .. ':' .. st[2], ARGV[3]) end
  end_job(KEYS[1], KEYS[2], model, 'queued', 'cancelled',
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

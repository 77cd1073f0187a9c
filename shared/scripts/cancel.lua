-- cancel: queued -> cancelled at once; running -> cancel requested (the worker stops at
-- the model's next progress step and finishes the job as cancelled).
-- KEYS: 1 job hash, 2 input, 3 stats hash
-- ARGV: 1 tenant, 2 events channel, 3 job id
-- Returns {'cancelled'} | {'requested'} | {'final', status} | {'missing'}
local st = redis.call('HMGET', KEYS[1], 'status', 'tenant', 'model', 'ttl_s')
if not st[1] or st[2] ~= ARGV[1] then return {'missing'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if st[1] == 'queued' then
  local ttl = tonumber(st[4] or '86400')
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_ms', now, 'updated_ms', now,
    'error', 'cancelled by the client before it started')
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('HINCRBY', KEYS[3], st[3] .. ':queued', -1)
  redis.call('HINCRBY', KEYS[3], st[3] .. ':cancelled', 1)
  redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' cancelled')
  return {'cancelled'}
end
if st[1] == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1', 'updated_ms', now)
  redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' cancelling')
  return {'requested'}
end
return {'final', st[1]}

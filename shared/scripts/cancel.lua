-- cancel: queued -> cancelled at once (also while it waits for a retry); running -> cancel
-- requested: the worker is told on its control channel, stops the job at the model's next
-- step and finishes it as cancelled (a lost worker's job ends cancelled when reclaimed).
-- KEYS: 1 job hash, 2 stats hash, 3 webhook task stream
-- ARGV: 1 tenant (another tenant's job reads as missing; "*", an admin's: any tenant's),
--       2 events channel, 3 job id, 4 control channel prefix ("{fleet}:control:"),
--       5 webhook delivery key prefix, 6 active set key prefix, 7 stream key prefix
--       ("{fleet}:stream:"), 8 entries hash key prefix, 9 delayed set key prefix, 10 group,
--       11 wait list key prefix ("{fleet}:wait:"; a wait list is that, the model, ':', the
--       tenant, ':', the rank: 0 high, 1 normal, 2 low), 12 tombstone key prefix
--       ("{fleet}:gone:"), 13 kept list key prefix ("{fleet}:kept:")
-- Returns {'cancelled'} | {'requested'} | {'final', status} | {'missing'}
local job_key, stats_key, tasks_key = KEYS[1], KEYS[2], KEYS[3]
local tenant, channel, id, control_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local delivery_prefix, active_prefix = ARGV[5], ARGV[6]
local stream_prefix, entries_prefix, delayed_prefix = ARGV[7], ARGV[8], ARGV[9]
local group, wait_prefix = ARGV[10], ARGV[11]
hooks.active_prefix, hooks.gone_prefix, hooks.kept_prefix = active_prefix, ARGV[12], ARGV[13]
hooks.tasks, hooks.delivery_prefix, hooks.channel = tasks_key, delivery_prefix, channel
local st = redis.call('HMGET', job_key, 'status', 'tenant', 'model', 'worker', 'entry_id',
  'priority', 'retry_at_ms')
if not st[1] or (tenant ~= '*' and st[2] ~= tenant) then return {'missing'} end
local now = now_ms()
if st[1] == 'queued' then
  -- Its stream entry, delayed-set id or wait-list id goes now: left there, it would be
  -- counted as expired when found after the cancelled job's keys expired, a second count
  -- of one job. A worker that has read the entry but not claimed it yet finds the job
  -- cancelled and drops it (claim.lua).
  local model = st[3]
  drop_entry(stream_prefix .. model, group, entries_prefix .. model, st[5])
  redis.call('ZREM', delayed_prefix .. model, id)
  if not st[5] and not st[7] then
    -- On the wait list of its rank (the rank submit gave it, state.c: not high or low is
    -- normal). LREM reads the list from its head up to the id: O(n) in its length
    -- (docs/redis.md). Not there: it waits in a wait set of protocol 2, queued before an
    -- upgrade (feed.lua).
    local rank = st[6] == 'high' and '0' or st[6] == 'low' and '2' or '1'
    local wait = wait_prefix .. model .. ':' .. st[2]
    if redis.call('LREM', wait .. ':' .. rank, 1, id) == 0 then
      redis.call('ZREM', wait, id)
    end
  end
  end_job(job_key, stats_key, model, 'queued', 'cancelled',
    'cancelled by the client before it started', now, channel, id)
  return {'cancelled'}
end
if st[1] == 'running' then
  redis.call('HSET', job_key, 'cancel_requested', '1', 'updated_ms', now)
  redis.call('PUBLISH', channel, id .. ' cancelling')
  if st[4] then redis.call('PUBLISH', control_prefix .. st[4], 'cancel ' .. id) end
  return {'requested'}
end
return {'final', st[1]}

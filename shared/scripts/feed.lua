-- feed: fair share. Moves jobs from the tenants' wait sets onto the model's stream until
-- `target` entries wait there undelivered, taking one job per tenant in turn (the waiting
-- list of wait set keys rotates), and within a tenant the lowest score first: high before
-- normal before low, each in submit order. Workers call it before they read, so a tenant
-- who submits 10 jobs behind another tenant's 10,000 waits behind at most `target`
-- entries, not behind the backlog. While only one tenant waits there are no turns to take:
-- its jobs are taken in one ZPOPMIN. The moved jobs' entries hash fields are written with
-- one HSET.
-- KEYS: 1 model stream, 2 waiting list, 3 entries hash, 4 stats hash
-- ARGV: 1 model, 2 target, 3 group, 4 job key prefix
-- Returns how many jobs went onto the stream.
local stream_key, waiting_key, entries_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local model, target, group, job_prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local ready = ready_count(stream_key, group)
local need = target - ready
local moved, looks = 0, 0
local tenants = need > 0 and redis.call('LLEN', waiting_key) or 0
local entries = {}
while need > 0 and tenants > 0 and looks < 4 * target + 64 do
  looks = looks + 1
  local wait, take
  if tenants == 1 then
    wait, take = redis.call('LINDEX', waiting_key, 0), need
  else
    wait, take = redis.call('LMOVE', waiting_key, waiting_key, 'LEFT', 'RIGHT'), 1
  end
  local popped = redis.call('ZPOPMIN', wait, take)
  if #popped == 0 then
    redis.call('LREM', waiting_key, 1, wait) -- nothing left waiting for this tenant
    tenants = tenants - 1
  end
  for i = 1, #popped, 2 do
    local id = popped[i]
    local job = job_prefix .. id
    local st = redis.call('HGET', job, 'status')
    if st == 'queued' then
      local entry = redis.call('XADD', stream_key, '*', 'job', id)
      entries[#entries + 1] = entry
      entries[#entries + 1] = id
      redis.call('HSET', job, 'entry_id', entry)
      need = need - 1
      moved = moved + 1
    elseif not st then
      -- Its keys expired while it waited (a cancel takes its id out first).
      count_expired(stats_key, model, 'queued')
    end
  end
end
if #entries > 0 then redis.call('HSET', entries_key, unpack(entries)) end
return moved

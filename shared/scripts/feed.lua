-- feed: fair share. Moves jobs from the tenants' wait sets onto the model's stream until
-- `target` entries wait there undelivered, taking one job per tenant in turn (the waiting
-- list of wait set keys rotates), and within a tenant the lowest score first: high before
-- normal before low, each in submit order. Workers call it before they read, so a tenant
-- who submits 10 jobs behind another tenant's 10,000 waits behind at most `target`
-- entries, not behind the backlog.
-- KEYS: 1 model stream, 2 waiting list, 3 entries hash, 4 stats hash
-- ARGV: 1 model, 2 target, 3 group, 4 job key prefix
-- Returns how many jobs went onto the stream.
local ready = ready_count(KEYS[1], ARGV[3])
local need = tonumber(ARGV[2]) - ready
local moved, looks = 0, 0
while need > 0 and looks < 4 * tonumber(ARGV[2]) + 64 do
  looks = looks + 1
  local wait = redis.call('LMOVE', KEYS[2], KEYS[2], 'LEFT', 'RIGHT')
  if not wait then break end
  local id = redis.call('ZPOPMIN', wait)[1]
  if not id then
    redis.call('LREM', KEYS[2], 1, wait) -- nothing left waiting for this tenant
  else
    local job = ARGV[4] .. id
    local st = redis.call('HGET', job, 'status')
    if st == 'queued' then
      local entry = redis.call('XADD', KEYS[1], '*', 'job', id)
      redis.call('HSET', KEYS[3], entry, id)
      redis.call('HSET', job, 'entry_id', entry)
      redis.call('HDEL', job, 'wait_key')
      need = need - 1
      moved = moved + 1
    elseif not st then
      -- Its keys expired while it waited (a cancel takes its id out first).
      count_expired(KEYS[4], ARGV[1], 'queued')
    end
  end
end
return moved

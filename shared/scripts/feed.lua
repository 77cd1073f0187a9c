-- feed: fair share. Moves jobs from the tenants' wait lists onto the model's stream until
-- `target` entries wait there undelivered, taking one job per tenant in turn (the waiting
-- list of tenants' wait list stems rotates), and within a tenant high before normal before
-- low, each in submit order (a list per rank, popped from its head). Workers call it
-- before they read, so a tenant who submits 10 jobs behind another tenant's 10,000 waits
-- behind at most `target` entries, not behind the backlog. While only one tenant waits
-- there are no turns to take: its jobs are taken with one LPOP of many per rank. The moved
-- jobs' entries hash fields are written with one HSET; the jobs themselves are not read
-- or written (claim records a job's entry).
-- A waiting list entry that does not end in ':' names a wait set of protocol 2 (a sorted
-- set scored rank * 2^40 + seq), left by an older gateway: it is drained with ZPOPMIN, so
-- no job queued before an upgrade is stranded.
-- KEYS: 1 model stream, 2 waiting list, 3 entries hash, 4 queues hash
-- ARGV: 1 target, 2 group, 3 model
-- Returns how many jobs went onto the stream: none while the model is paused (pause.lua:
-- <model>:paused_ms in the queues hash), so its jobs wait in their tenants' lists, in
-- fair-share order.
local stream_key, waiting_key, entries_key = KEYS[1], KEYS[2], KEYS[3]
local target, group = tonumber(ARGV[1]), ARGV[2]
if redis.call('HEXISTS', KEYS[4], ARGV[3] .. ':paused_ms') == 1 then return 0 end
local RANKS = {'0', '1', '2'}
-- Takes up to `take` ids of one tenant, in its order. Returns them, and whether its lists
-- (or old set) are now empty: then it held fewer than `take`.
local function pop(wait, take)
  local ids = {}
  if string.byte(wait, -1) ~= 58 then -- not ':': a protocol 2 wait set
    local z = redis.call('ZPOPMIN', wait, take)
    for i = 1, #z, 2 do ids[#ids + 1] = z[i] end
    return ids, #ids < take
  end
  for _, r in ipairs(RANKS) do
    local got = redis.call('LPOP', wait .. r, take - #ids)
    if got then
      for i = 1, #got do ids[#ids + 1] = got[i] end
      if #ids == take then return ids, false end
    end
  end
  return ids, true
end
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
  local ids, empty = pop(wait, take)
  if empty then
    redis.call('LREM', waiting_key, 1, wait) -- nothing left waiting for this tenant
    tenants = tenants - 1
  end
  -- "{fleet}:wait:<model>:<tenant>:" (a protocol 2 set: without the last ':'): the
  -- tenant goes into the entries hash, for the tombstone of a job found expired.
  local owner = string.match(wait, ':([^:]+):?$')
  -- The jobs are not read here: one whose keys expired or that was cancelled meanwhile
  -- (a cancel takes a waiting id out of its list, but a fed one it leaves) is found by
  -- claim, which acknowledges its entry and counts it then.
  for i = 1, #ids do
    local entry = redis.call('XADD', stream_key, '*', 'job', ids[i])
    entries[#entries + 1] = entry
    entries[#entries + 1] = entry_value(ids[i], 'queued', owner)
  end
  need = need - #ids
  moved = moved + #ids
end
if #entries > 0 then redis.call('HSET', entries_key, unpack(entries)) end
return moved

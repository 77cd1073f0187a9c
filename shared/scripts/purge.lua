-- purge: an operator empties a model's queue (POST /v1/models/{model}/purge): every queued
-- job of the model ends cancelled, with the error below, wherever it waits: on the stream
-- (undelivered, or read by a worker that has not claimed it yet), on a tenant's wait list,
-- in the delayed set (waiting for a retry), or in a wait set of protocol 2. Running jobs
-- are left alone (cancel them one by one). Each job ends as cancel.lua ends a queued one
-- (lib.lua's end_job: the result TTL, queued -> cancelled in the counters, its event, its
-- webhook, its tenant's active set). An id whose job's keys expired is counted expired
-- here, as the script that meets a job's last reference does (lib.lua's count_expired).
-- At most `budget` jobs per call, so a long queue does not hold Redis: the caller calls
-- again with the returned cursor while more is 1.
-- KEYS: 1 model stream, 2 entries hash, 3 waiting list, 4 delayed set, 5 stats hash,
--       6 webhook task stream
-- ARGV: 1 model, 2 group, 3 events channel, 4 webhook delivery key prefix, 5 active set
--       key prefix, 6 job key prefix ("{fleet}:job:"), 7 stream cursor ("": from the
--       start; else the last entry id a call looked at), 8 budget (most ids per call),
--       9 tombstone key prefix ("{fleet}:gone:"), 10 kept list key prefix ("{fleet}:kept:")
-- Returns {cancelled, next stream cursor, more (1: call again)}
local stream_key, entries_key, waiting_key, delayed_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local stats_key, tasks_key = KEYS[5], KEYS[6]
local model, group, channel, delivery_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local active_prefix, job_prefix, cursor = ARGV[5], ARGV[6], ARGV[7]
local budget = tonumber(ARGV[8])
hooks.active_prefix, hooks.gone_prefix, hooks.kept_prefix = active_prefix, ARGV[9], ARGV[10]
hooks.tasks, hooks.delivery_prefix, hooks.channel = tasks_key, delivery_prefix, channel
local ERR = 'cancelled by an operator: the queue of model ' .. model .. ' was purged'
local now = now_ms()
local cancelled, looked = 0, 0
hooks.tombs = {} -- the purged jobs' tombstones: written together by tomb_flush at the end

-- Ends one queued job found by one of its references (already taken out by the caller);
-- a job whose keys expired is counted expired, one in another state is left alone.
local function purge_id(id, from_expired)
  looked = looked + 1
  local job = job_prefix .. id
  local status = redis.call('HGET', job, 'status')
  if status == 'queued' then
    end_job(job, stats_key, model, 'queued', 'cancelled', ERR, now, channel, id)
    cancelled = cancelled + 1
  elseif not status and from_expired then
    count_expired(stats_key, model, from_expired)
  end
end

-- 1. The stream, in entry order from the cursor. An entry whose job runs stays (its
-- worker holds it); one whose job is queued goes with the job.
local more = false
local entries = redis.call('XRANGE', stream_key, cursor == '' and '-' or ('(' .. cursor), '+',
  'COUNT', budget)
for _, e in ipairs(entries) do
  cursor = e[1]
  local id
  for f = 1, #e[2] - 1, 2 do
    if e[2][f] == 'job' then id = e[2][f + 1] end
  end
  local v = redis.call('HGET', entries_key, e[1])
  local st = id and redis.call('HGET', job_prefix .. id, 'status')
  if st == 'queued' then
    drop_entry(stream_key, group, entries_key, e[1])
    purge_id(id)
  elseif not st then
    -- Its job's keys expired (or the entry names none): the entry was its last reference.
    drop_entry(stream_key, group, entries_key, e[1])
    if v then
      local _, from = entry_job(v)
      count_expired(stats_key, model, from)
    end
  end
end
if #entries == budget then more = true end
looked = #entries

-- 2. The tenants' wait lists (and wait sets of protocol 2), tenant by tenant.
while not more and looked < budget do
  local stem = redis.call('LINDEX', waiting_key, 0)
  if not stem then break end
  local left = false
  if string.byte(stem, -1) ~= 58 then -- not ':': a protocol 2 wait set
    local z = redis.call('ZPOPMIN', stem, budget - looked)
    for i = 1, #z, 2 do purge_id(z[i], 'queued') end
    left = redis.call('EXISTS', stem) == 1
  else
    for _, r in ipairs({'0', '1', '2'}) do
      if looked < budget then
        local ids = redis.call('LPOP', stem .. r, budget - looked)
        if ids then
          for i = 1, #ids do purge_id(ids[i], 'queued') end
        end
      end
      if redis.call('LLEN', stem .. r) > 0 then left = true end
    end
  end
  if left then
    more = true
  else
    redis.call('LREM', waiting_key, 1, stem)
  end
end

-- 3. The delayed set: jobs waiting for their retry time.
if not more and looked < budget then
  local z = redis.call('ZPOPMIN', delayed_key, budget - looked)
  for i = 1, #z, 2 do purge_id(z[i], 'queued') end
  if redis.call('ZCARD', delayed_key) > 0 then more = true end
end
tomb_flush()
return {cancelled, cursor, more and 1 or 0}

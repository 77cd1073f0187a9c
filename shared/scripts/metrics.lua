#!lua flags=no-writes
-- metrics (read only): what GET /metrics reports about the whole fleet, in one call whose
-- cost does not grow with the number of jobs (docs/metrics.md).
-- KEYS: 1 workers zset, 2 stats hash, 3 models hash (the registered models)
-- ARGV: 1 worker key prefix ("{fleet}:worker:"), 2 stream key prefix ("{fleet}:stream:"),
--       3 waiting list prefix ("{fleet}:waiting:"), 4 delayed set prefix
--       ("{fleet}:delayed:"), 5 job key prefix ("{fleet}:job:"), 6 metrics hash prefix
--       ("{fleet}:metrics:"), 7 the workers' consumer group, 8 most ids read per place
--       (stream, delayed set), 9 most tenants looked at per model, 10 shard only ("1": a
--       shard other than the control one, shards.h: only its counters and queues are read,
--       KEYS 1 and 3 are then its stats hash again, not read, and the reply has no workers,
--       models only from the stats hash and no histograms; "": the control shard, all)
-- Returns {now_ms, workers, stats, models}: now_ms as text (Redis' clock); workers
--       {{model, busy 0|1}, ...} of the live workers (their registration exists); stats
--       the stats hash (HGETALL shape); models {{model, oldest_created_ms ('' when no job
--       waits), histograms (HGETALL shape of the model's metrics hash)}, ...}, one per
--       registered model and per model named in the stats hash.
-- The oldest job a model has waiting is looked for at the front of every place a queued
-- job waits: the first ARGV[8] entries of its stream not yet delivered to a worker, the
-- head of each of the tenants' wait lists (the first ARGV[9] tenants of its waiting list),
-- and the first ARGV[8] delayed retries that are due. A retry whose time has not come is
-- not waiting for a worker and is left out. Each of these places is in arrival order, so
-- its head is its oldest job, except the stream, whose undelivered part is short (the
-- feed keeps about a batch there).
local workers_key, stats_key, models_key = KEYS[1], KEYS[2], KEYS[3]
local worker_prefix, stream_prefix, waiting_prefix = ARGV[1], ARGV[2], ARGV[3]
local delayed_prefix, job_prefix, metrics_prefix = ARGV[4], ARGV[5], ARGV[6]
local group, scan, tenants_max = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local shard_only = ARGV[10] == '1'
local now = now_ms()

local workers = {}
if not shard_only then
  for _, name in ipairs(redis.call('ZRANGE', workers_key, 0, -1)) do
    local w = redis.call('HMGET', worker_prefix .. name, 'model', 'busy')
    if w[1] then workers[#workers + 1] = {w[1], w[2] or '0'} end
  end
end

local stats = redis.call('HGETALL', stats_key)

-- The oldest created_ms among job ids (a job whose keys expired has none: skipped).
local oldest
local function consider(id)
  if not id then return end
  local c = tonumber(redis.call('HGET', job_prefix .. id, 'created_ms'))
  if c and (not oldest or c < oldest) then oldest = c end
end

-- The stream's entries after the group's last delivered one.
local function stream_front(model)
  local stream = stream_prefix .. model
  if redis.call('EXISTS', stream) == 0 then return end
  local groups = redis.pcall('XINFO', 'GROUPS', stream)
  if type(groups) ~= 'table' or groups.err then return end
  local from = '-'
  for _, g in ipairs(groups) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == group and last then from = '(' .. last end
  end
  for _, e in ipairs(redis.call('XRANGE', stream, from, '+', 'COUNT', scan)) do
    local f = e[2]
    for i = 1, #f, 2 do
      if f[i] == 'job' then consider(f[i + 1]) end
    end
  end
end

local function wait_lists(model)
  for _, stem in ipairs(redis.call('LRANGE', waiting_prefix .. model, 0, tenants_max - 1)) do
    if string.sub(stem, -1) == ':' then
      for rank = 0, 2 do consider(redis.call('LINDEX', stem .. rank, 0) or nil) end
    else
      -- A wait set of protocol version 2 (a sorted set): its first member.
      consider(redis.call('ZRANGE', stem, 0, 0)[1])
    end
  end
end

local function due_retries(model)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed_prefix .. model, '-inf', now,
      'LIMIT', 0, scan)) do
    consider(id)
  end
end

local names = shard_only and {} or redis.call('HKEYS', models_key)
for i = 1, #stats, 2 do names[#names + 1] = string.match(stats[i], '^(.*):[^:]*$') end
local models, seen = {}, {}
for _, model in ipairs(names) do
  if model ~= '' and not seen[model] then
    seen[model] = true
    oldest = nil
    stream_front(model)
    wait_lists(model)
    due_retries(model)
    models[#models + 1] = {model, oldest and string.format('%d', oldest) or '',
      shard_only and {} or redis.call('HGETALL', metrics_prefix .. model)}
  end
end

return {string.format('%d', now), workers, stats, models}

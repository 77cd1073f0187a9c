#!lua flags=no-writes
-- models (read only): the registered models, live workers and the per-model counters.
-- KEYS: 1 workers zset, 2 stats hash, 3 models hash
-- ARGV: 1 worker key prefix ("{fleet}:worker:"), 2 with counters ("1": the stats hash;
--       "0": an empty array in its place, for a reader that needs only the models)
-- A worker is live while its heartbeat hash exists (it expires when heartbeats stop). A
-- model is registered while the models hash holds its record (a worker's start or fleetctl
-- model add wrote it; only fleetctl model remove deletes it).
-- Returns {{{name, model, backend, max_batch, busy}, ...}, stats (HGETALL shape),
--          models (HGETALL shape: model, record JSON, ...)}
local workers_key, stats_key, models_key = KEYS[1], KEYS[2], KEYS[3]
local worker_prefix, with_stats = ARGV[1], ARGV[2] == '1'
local names = redis.call('ZRANGE', workers_key, 0, -1)
local live = {}
for _, name in ipairs(names) do
  local w = redis.call('HMGET', worker_prefix .. name, 'model', 'backend', 'max_batch', 'busy')
  if w[1] then
    live[#live + 1] = {name, w[1], w[2] or '', w[3] or '0', w[4] or '0'}
  end
end
local stats = {}
if with_stats then stats = redis.call('HGETALL', stats_key) end
return {live, stats, redis.call('HGETALL', models_key)}

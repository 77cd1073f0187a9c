#!lua flags=no-writes
-- models (read only): the registered models, live workers and the per-model counters.
-- KEYS: 1 workers zset, 2 stats hash, 3 models hash, 4 queues hash (a paused model's mark,
--       pause.lua: shown in its record as "paused_ms")
-- ARGV: 1 worker key prefix ("{fleet}:worker:"), 2 with counters ("1": the stats hash;
--       "0": an empty array in its place, for a reader that needs only the models)
-- A worker is live while its heartbeat hash exists (it expires when heartbeats stop). A
-- model is registered while the models hash holds its record (a worker's start or fleetctl
-- model add wrote it; only fleetctl model remove deletes it).
-- Returns {{{name, model, backend, max_batch, busy}, ...}, stats (HGETALL shape),
--          models (HGETALL shape: model, record JSON, ...)}
local workers_key, stats_key, models_key, queues_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
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
local models = redis.call('HGETALL', models_key)
-- A paused model's record shows when it was paused, as its readers take it (the record is
-- a JSON object: the field goes first).
for i = 1, #models, 2 do
  local p = redis.call('HGET', queues_key, models[i] .. ':paused_ms')
  if p and string.sub(models[i + 1], 1, 1) == '{' then
    local rest = string.sub(models[i + 1], 2)
    models[i + 1] = '{"paused_ms":' .. p .. (string.match(rest, '^%s*}') and '' or ',') .. rest
  end
end
return {live, stats, models}

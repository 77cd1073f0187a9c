#!lua flags=no-writes
-- models (read only): live workers and the per-model counters.
-- KEYS: 1 workers zset, 2 stats hash
-- ARGV: 1 worker key prefix ("{fleet}:worker:")
-- A worker is live while its heartbeat hash exists (it expires when heartbeats stop).
-- Returns {{{name, model, backend, max_batch, busy}, ...}, stats (HGETALL shape)}
local workers_key, stats_key = KEYS[1], KEYS[2]
local worker_prefix = ARGV[1]
local names = redis.call('ZRANGE', workers_key, 0, -1)
local live = {}
for _, name in ipairs(names) do
  local w = redis.call('HMGET', worker_prefix .. name, 'model', 'backend', 'max_batch', 'busy')
  if w[1] then
    live[#live + 1] = {name, w[1], w[2] or '', w[3] or '0', w[4] or '0'}
  end
end
return {live, redis.call('HGETALL', stats_key)}

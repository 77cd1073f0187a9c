-- promote: puts jobs whose retry time has come back on their model's stream, at the end
-- of the queue. Ids of jobs that are no longer queued (cancelled, expired) are dropped; an
-- expired one is counted as such.
-- KEYS: 1 delayed set, 2 model stream, 3 queues hash, 4 entries hash, 5 stats hash
-- ARGV: 1 model, 2 most to move, 3 job key prefix ("{fleet}:job:")
-- Returns how many jobs went back on the stream.
local delayed_key, stream_key, queues_key, entries_key, stats_key = KEYS[1], KEYS[2], KEYS[3],
  KEYS[4], KEYS[5]
local model, most, job_prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local due = redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now_ms(), 'LIMIT', 0, most)
local moved = 0
for _, id in ipairs(due) do
  redis.call('ZREM', delayed_key, id)
  local job = job_prefix .. id
  local h = redis.call('HMGET', job, 'status', 'tenant')
  local st, owner = h[1], h[2]
  if not st then
    -- Its keys expired while it waited for its retry (a cancel takes its id out first).
    count_expired(stats_key, model, 'queued')
  elseif st == 'queued' then
    local entry = redis.call('XADD', stream_key, '*', 'job', id)
    local seq = redis.call('HINCRBY', queues_key, model .. ':seq', 1)
    redis.call('HSET', job, 'entry_id', entry, 'queue_seq', seq)
    redis.call('HDEL', job, 'retry_at_ms')
    redis.call('HSET', entries_key, entry, entry_value(id, 'queued', owner))
    moved = moved + 1
  end
end
return moved

-- promote: puts jobs whose retry time has come back on their model's stream, at the end
-- of the queue. Ids of jobs that are no longer queued (cancelled, expired) are dropped; an
-- expired one is counted as such.
-- KEYS: 1 delayed set, 2 model stream, 3 queues hash, 4 entries hash, 5 stats hash
-- ARGV: 1 model, 2 most to move, 3 job key prefix ("{fleet}:job:")
-- Returns how many jobs went back on the stream.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local job = ARGV[3] .. id
  local st = redis.call('HGET', job, 'status')
  if not st then
    -- Its keys expired while it waited for its retry (a cancel takes its id out first).
    count_expired(KEYS[5], ARGV[1], 'queued')
  elseif st == 'queued' then
    local entry = redis.call('XADD', KEYS[2], '*', 'job', id)
    local seq = redis.call('HINCRBY', KEYS[3], ARGV[1] .. ':seq', 1)
    redis.call('HSET', job, 'entry_id', entry, 'queue_seq', seq)
    redis.call('HDEL', job, 'retry_at_ms')
    redis.call('HSET', KEYS[4], entry, id)
    moved = moved + 1
  end
end
return moved

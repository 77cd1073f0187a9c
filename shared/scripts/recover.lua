-- recover: a pending stream entry was deleted before its job finished (XAUTOCLAIM reports
-- such entries; only a hand-made XDEL or XTRIM deletes one). Finds the job it carried and,
-- unless the job has ended, gives it a new entry, so the job is not lost. A job whose keys
-- expired meanwhile is counted as expired from the state the entry recorded.
-- KEYS: 1 entries hash, 2 model stream, 3 queues hash, 4 stats hash
-- ARGV: 1 deleted entry id, 2 model, 3 job key prefix
-- Returns {'requeued', id} | {'ended', id} | {'unknown'}
local v = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
if not v then return {'unknown'} end
local id, from = entry_job(v)
local job = ARGV[3] .. id
local st = redis.call('HMGET', job, 'status', 'entry_id')
if not st[1] then
  count_expired(KEYS[4], ARGV[2], from)
  return {'ended', id}
end
if (st[1] ~= 'queued' and st[1] ~= 'running') or st[2] ~= ARGV[1] then return {'ended', id} end
local entry = redis.call('XADD', KEYS[2], '*', 'job', id)
redis.call('HSET', job, 'entry_id', entry)
if st[1] == 'queued' then
  redis.call('HSET', job, 'queue_seq', redis.call('HINCRBY', KEYS[3], ARGV[2] .. ':seq', 1))
end
redis.call('HSET', KEYS[1], entry, entry_value(id, st[1]))
return {'requeued', id}

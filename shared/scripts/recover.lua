-- recover: a pending stream entry was deleted before its job finished (XAUTOCLAIM reports
-- such entries; only a hand-made XDEL or XTRIM deletes one). Finds the job it carried and,
-- unless the job has ended, gives it a new entry, so the job is not lost. A job whose keys
-- expired meanwhile is counted as expired from the state the entry recorded.
-- KEYS: 1 entries hash, 2 model stream, 3 queues hash, 4 stats hash
-- ARGV: 1 deleted entry id, 2 model, 3 job key prefix
-- Returns {'requeued', id} | {'ended', id} | {'unknown'}
local entries_key, stream_key, queues_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local deleted, model, job_prefix = ARGV[1], ARGV[2], ARGV[3]
local v = redis.call('HGET', entries_key, deleted)
redis.call('HDEL', entries_key, deleted)
if not v then return {'unknown'} end
local id, from, owner = entry_job(v)
local job = job_prefix .. id
local st = redis.call('HMGET', job, 'status', 'entry_id')
if not st[1] then
  count_expired(stats_key, model, from)
  return {'ended', id}
end
if (st[1] ~= 'queued' and st[1] ~= 'running') or st[2] ~= deleted then return {'ended', id} end
local entry = redis.call('XADD', stream_key, '*', 'job', id)
redis.call('HSET', job, 'entry_id', entry)
if st[1] == 'queued' then
  redis.call('HSET', job, 'queue_seq', redis.call('HINCRBY', queues_key, model .. ':seq', 1))
end
redis.call('HSET', entries_key, entry, entry_value(id, st[1], owner))
return {'requeued', id}

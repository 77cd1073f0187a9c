-- finish: running -> succeeded | failed | cancelled, for every job of a batch in one call.
-- Only the current lease may write: a job whose token no longer holds it answers 'stale'
-- and nothing of it is written. Stores each result, switches every key of the job to the
-- result TTL, acknowledges and deletes the jobs' stream entries (so the stream holds only
-- undelivered and pending entries). The clock, the counters and the stream acknowledgement
-- are done once for the batch.
-- KEYS: 1 model stream, 2 stats hash, 3 entries hash, 4 webhook task stream
-- ARGV: 1 group, 2 model, 3 events channel, 4 webhook delivery key prefix, 5 active set
--       key prefix, 6 job key prefix ("{fleet}:job:"), 7 result key suffix (":result"),
--       then for each job five: job id, token, status, result (msgpack or ""), error
--       (or "")
-- Returns one reply per job, in order: 'ok' | 'stale'. Error: BADSTATUS (nothing written).
hooks.active_prefix = ARGV[5]
hooks.tasks, hooks.delivery_prefix, hooks.channel = KEYS[4], ARGV[4], ARGV[3]
local model = ARGV[2]
for i = 8, #ARGV, 5 do
  local status = ARGV[i + 2]
  if status ~= 'succeeded' and status ~= 'failed' and status ~= 'cancelled' then
    return redis.error_reply('BADSTATUS ' .. status .. ' is not a final status')
  end
end
local now = now_ms()
local out, entries, counts = {}, {}, {}
local FIELDS = {'status', 'lease', 'entry_id', unpack(END_FIELDS)}
for i = 8, #ARGV, 5 do
  local id, status = ARGV[i], ARGV[i + 2]
  local job = ARGV[6] .. id
  local st = redis.call('HMGET', job, unpack(FIELDS))
  if st[1] ~= 'running' or st[2] ~= ARGV[i + 1] then
    out[#out + 1] = 'stale'
  else
    local ttl = end_job(job, KEYS[2], model, 'running', status, ARGV[i + 4],
      now, ARGV[3], id, {st[4], st[5], st[6], st[7], st[8], st[9]}, true)
    counts[status] = (counts[status] or 0) + 1
    if ARGV[i + 3] ~= '' then redis.call('SET', job .. ARGV[7], ARGV[i + 3], 'EX', ttl) end
    if st[3] and st[3] ~= '' then entries[#entries + 1] = st[3] end
    out[#out + 1] = 'ok'
  end
end
local done = 0
for status, n in pairs(counts) do
  redis.call('HINCRBY', KEYS[2], model .. ':' .. status, n)
  done = done + n
end
if done > 0 then redis.call('HINCRBY', KEYS[2], model .. ':running', -done) end
if #entries > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(entries))
  redis.call('XDEL', KEYS[1], unpack(entries))
  redis.call('HDEL', KEYS[3], unpack(entries))
end
return out

-- finish: running -> succeeded | failed | cancelled, for every job of a batch in one call.
-- Only the current lease may write: a job whose token no longer holds it answers 'stale'
-- and nothing of it is written. Stores each result, switches every key of the job to the
-- result TTL, acknowledges and deletes the jobs' stream entries (so the stream holds only
-- undelivered and pending entries). The clock, the counters, the stream acknowledgement
-- and the event (one message naming every job) are done once for the batch.
-- KEYS: 1 model stream, 2 stats hash, 3 entries hash, 4 webhook task stream
-- ARGV: 1 group, 2 model, 3 events channel, 4 webhook delivery key prefix, 5 active set
--       key prefix, 6 job key prefix ("{fleet}:job:"), 7 result key suffix (":result"),
--       8 tombstone key prefix ("{fleet}:gone:"), 9 kept list key prefix ("{fleet}:kept:"),
--       then for each job five: job id, token, status, result (msgpack or ""), error
--       (or "")
-- Returns one reply per job, in order: 'ok' | 'stale'. Error: BADSTATUS (nothing written).
local stream_key, stats_key, entries_key, tasks_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, model, channel, delivery_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local active_prefix, job_prefix, result_suffix = ARGV[5], ARGV[6], ARGV[7]
local FIRST_JOB = 10 -- the ARGV index of the first job's five
hooks.active_prefix, hooks.gone_prefix, hooks.kept_prefix = active_prefix, ARGV[8], ARGV[9]
hooks.tasks, hooks.delivery_prefix, hooks.channel = tasks_key, delivery_prefix, channel
for i = FIRST_JOB, #ARGV, 5 do
  local status = ARGV[i + 2]
  if status ~= 'succeeded' and status ~= 'failed' and status ~= 'cancelled' then
    return redis.error_reply('BADSTATUS ' .. status .. ' is not a final status')
  end
end
local now = now_ms()
local now_s = tostring(now) -- made text once: Lua would format the number per call
local out, entries, counts, events = {}, {}, {}, {}
hooks.tombs = {} -- the batch's tombstones: written together by tomb_flush below
local FIELDS = {'status', 'lease', 'entry_id', unpack(END_FIELDS)}
for i = FIRST_JOB, #ARGV, 5 do
  local id, token, status, result, err = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    ARGV[i + 4]
  local job = job_prefix .. id
  local st = redis.call('HMGET', job, unpack(FIELDS))
  if st[1] ~= 'running' or st[2] ~= token then
    out[#out + 1] = 'stale'
  else
    local ttl = end_job(job, stats_key, model, 'running', status, err,
      now_s, channel, id, {st[4], st[5], st[6], st[7], st[8], st[9], st[10], st[11],
        st[12]}, true, events, #result)
    counts[status] = (counts[status] or 0) + 1
    if result ~= '' then redis.call('SET', job .. result_suffix, result, 'EX', ttl) end
    if st[3] and st[3] ~= '' then entries[#entries + 1] = st[3] end
    out[#out + 1] = 'ok'
  end
end
tomb_flush()
local done = 0
for status, n in pairs(counts) do
  redis.call('HINCRBY', stats_key, model .. ':' .. status, n)
  done = done + n
end
if done > 0 then redis.call('HINCRBY', stats_key, model .. ':running', -done) end
if #entries > 0 then
  redis.call('XACK', stream_key, group, unpack(entries))
  redis.call('XDEL', stream_key, unpack(entries))
  redis.call('HDEL', entries_key, unpack(entries))
end
if #events > 0 then redis.call('PUBLISH', channel, table.concat(events, '\n')) end
return out

-- claim: queued -> running under a new lease token, for every entry of a batch in one call.
-- Also the way back from a lost worker: an entry taken over with XAUTOCLAIM whose job is
-- still running under an expired lease starts a new attempt (running -> running), or ends
-- the job: cancelled when a cancel was requested, failed and dead-lettered when
-- max_attempts were used. Entries of jobs that will not run are acknowledged and deleted
-- here. What every job of the batch shares is done once: the clock, the queue head, the
-- queued -> running counters, the entries hash update.
-- KEYS: 1 model stream, 2 queues hash, 3 stats hash, 4 entries hash, 5 dead-letter stream,
--       6 webhook task stream
-- ARGV: 1 group, 2 worker, 3 lease_ms, 4 model, 5 events channel, 6 dead-letter cap,
--       7 webhook delivery key prefix, 8 active set key prefix, 9 job key prefix
--       ("{fleet}:job:"), then for each entry three: entry id, job id, lease token
-- Returns one reply per entry, in order: {'ok', input, attempts, timeout_s, reclaimed 0|1}
--       | {'gone'} | {'cancelled'} | {'dead', error} | {'skip', why}
local stream_key, queues_key, stats_key, entries_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dlq_key, tasks_key = KEYS[5], KEYS[6]
local group, worker, lease_ms, model = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local channel, dlq_cap, delivery_prefix, active_prefix = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local job_prefix = ARGV[9]
local FIRST_ENTRY = 10 -- the ARGV index of the first entry's three
hooks.active_prefix = active_prefix
hooks.tasks, hooks.delivery_prefix, hooks.channel = tasks_key, delivery_prefix, channel
local now = now_ms()
local lease_until = now + lease_ms
local FIELDS = {'status', 'queue_seq', 'timeout_s', 'queue_ttl_s', 'entry_id',
  'lease_until_ms', 'attempts', 'max_attempts', 'cancel_requested', 'worker',
  'ttl_s', 'idem_key', 'tenant', 'webhook', 'webhook_events', 'progress_percent',
  'retry_at_ms', 'in_n', 'active'}
local started, reclaimed_n, top_seq = 0, 0, 0
local running_entries = {}
local out = {}

local function claim_one(entry, id, token)
  local job = job_prefix .. id
  local function drop() drop_entry(stream_key, group, entries_key, entry) end
  local st = redis.call('HMGET', job, unpack(FIELDS))
  if not st[1] then
    -- The job's keys expired while it waited, or while it ran (a run longer than its
    -- queue TTL; the entry came back here after its lease): counted once, from the state
    -- its entry records, unless the entry was already dropped (a cancel took it out).
    local v = redis.call('HGET', entries_key, entry)
    drop()
    if v then
      local _, from = entry_job(v)
      count_expired(stats_key, model, from)
    end
    return {'gone'}
  end
  local status = st[1]
  if st[5] ~= entry then
    -- An entry the job no longer uses (it was requeued onto a newer one).
    drop()
    return {'skip', 'stale entry'}
  end
  local seq = tonumber(st[2]) or 0
  if status == 'cancelled' then
    drop()
    if seq > top_seq then top_seq = seq end
    return {'cancelled'}
  end
  if status ~= 'queued' and status ~= 'running' then
    drop()
    return {'skip', status}
  end
  local reclaimed = 0
  local ended = {st[11], st[12], st[13], st[14], st[15], st[19]} -- END_FIELDS
  if status == 'running' then
    if tonumber(st[6] or '0') > now then return {'skip', 'running under a live lease'} end
    -- Its worker stopped renewing the lease: that attempt is lost.
    reclaimed = 1
    reclaimed_n = reclaimed_n + 1
    if st[9] == '1' then
      cancel_running(job, stats_key, model, now, channel, id, ended)
      drop()
      return {'cancelled'}
    end
    local attempts, max = tonumber(st[7] or '0'), tonumber(st[8] or DEFAULT_MAX_ATTEMPTS)
    if attempts >= max then
      local err = string.format('worker lost %d times (the last one was %s); not retried',
        attempts, st[10] or 'unknown')
      fail_dead(job, stats_key, dlq_key, dlq_cap, model, id, err, now, channel, ended)
      drop()
      return {'dead', err}
    end
    redis.call('HSET', job, 'last_error',
      string.format('attempt %d: worker %s was lost', attempts, st[10] or 'unknown'))
  else
    if seq > top_seq then top_seq = seq end
    started = started + 1
    running_entries[#running_entries + 1] = entry
    running_entries[#running_entries + 1] = entry_value(id, 'running')
  end
  local attempts = tonumber(st[7] or '0') + 1
  redis.call('HSET', job, 'status', 'running', 'worker', worker, 'lease', token,
    'lease_until_ms', lease_until, 'started_ms', now, 'updated_ms', now, 'attempts', attempts)
  -- Progress and a retry time are left only by an earlier attempt (progress_percent is
  -- written with the other progress fields).
  if st[16] or st[17] then
    redis.call('HDEL', job, 'progress_percent', 'progress_message', 'progress_done',
      'progress_total', 'retry_at_ms')
  end
  -- The keys live another queue TTL (the one the gateway gave the job) from the start.
  expire_job(job, ttl_of(st[4]), st[12])
  redis.call('PUBLISH', channel, id .. ' running')
  webhook_event(job, 'running', 'job.running', id, now, {st[14], st[15], st[13]})
  return {'ok', read_input(job, st[18]), attempts, tonumber(st[3] or '0'), reclaimed}
end

for i = FIRST_ENTRY, #ARGV, 3 do
  out[#out + 1] = claim_one(ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
if top_seq > 0 then
  local head = tonumber(redis.call('HGET', queues_key, model .. ':head') or '0')
  if top_seq > head then redis.call('HSET', queues_key, model .. ':head', top_seq) end
end
if started > 0 then
  redis.call('HINCRBY', stats_key, model .. ':queued', -started)
  redis.call('HINCRBY', stats_key, model .. ':running', started)
  redis.call('HSET', entries_key, unpack(running_entries))
end
if reclaimed_n > 0 then redis.call('HINCRBY', stats_key, model .. ':reclaimed', reclaimed_n) end
return out

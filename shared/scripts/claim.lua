-- claim: queued -> running under a new lease token. Also the way back from a lost worker:
-- an entry taken over with XAUTOCLAIM whose job is still running under an expired lease
-- starts a new attempt (running -> running), or ends the job: cancelled when a cancel was
-- requested, failed and dead-lettered when max_attempts were used.
-- Entries of jobs that will not run are acknowledged and deleted here.
-- KEYS: 1 job hash, 2 input, 3 model stream, 4 queues hash, 5 stats hash, 6 entries hash,
--       7 dead-letter stream, 8 webhook task stream
-- ARGV: 1 entry id, 2 group, 3 worker, 4 token, 5 lease_ms, 6 model, 7 events channel,
--       8 job id, 9 dead-letter cap, 10 webhook delivery key prefix, 11 active set key prefix
-- Returns {'ok', input, attempts, timeout_s, reclaimed 0|1} | {'gone'} | {'cancelled'}
--       | {'dead', error} | {'skip', why}
hooks.active_prefix = ARGV[11]
hooks.tasks, hooks.delivery_prefix, hooks.channel = KEYS[8], ARGV[10], ARGV[7]
local model = ARGV[6]
local function drop() drop_entry(KEYS[3], ARGV[2], KEYS[6], ARGV[1]) end
local st = redis.call('HMGET', KEYS[1], 'status', 'queue_seq', 'timeout_s', 'queue_ttl_s',
  'entry_id', 'lease_until_ms', 'attempts', 'max_attempts', 'cancel_requested', 'worker')
if not st[1] then
  -- The job's keys expired while it waited, or while it ran (a run longer than its queue
  -- TTL; the entry came back here after its lease): counted once, from the state its
  -- entry records, unless the entry was already dropped (a cancel took it out).
  local v = redis.call('HGET', KEYS[6], ARGV[1])
  drop()
  if v then
    local _, from = entry_job(v)
    count_expired(KEYS[5], model, from)
  end
  return {'gone'}
end
local status = st[1]
if st[5] ~= ARGV[1] then
  -- An entry the job no longer uses (it was requeued onto a newer one).
  drop()
  return {'skip', 'stale entry'}
end
local function advance_head()
  local seq = tonumber(st[2])
  local head = tonumber(redis.call('HGET', KEYS[4], model .. ':head') or '0')
  if seq and seq > head then redis.call('HSET', KEYS[4], model .. ':head', seq) end
end
if status == 'cancelled' then
  drop()
  advance_head()
  return {'cancelled'}
end
if status ~= 'queued' and status ~= 'running' then
  drop()
  return {'skip', status}
end
local now = now_ms()
local reclaimed = 0
if status == 'running' then
  if tonumber(st[6] or '0') > now then return {'skip', 'running under a live lease'} end
  -- Its worker stopped renewing the lease: that attempt is lost.
  reclaimed = 1
  redis.call('HINCRBY', KEYS[5], model .. ':reclaimed', 1)
  if st[9] == '1' then
    end_job(KEYS[1], KEYS[2], KEYS[5], model, 'running', 'cancelled',
      'cancelled by the client while running', now, ARGV[7], ARGV[8])
    drop()
    return {'cancelled'}
  end
  local attempts, max = tonumber(st[7] or '0'), tonumber(st[8] or '3')
  if attempts >= max then
    local err = string.format('worker lost %d times (the last one was %s); not retried',
      attempts, st[10] or 'unknown')
    end_job(KEYS[1], KEYS[2], KEYS[5], model, 'running', 'failed', err, now, ARGV[7], ARGV[8])
    dead_letter(KEYS[7], ARGV[9], KEYS[1], KEYS[5], model, ARGV[8], err, now)
    drop()
    return {'dead', err}
  end
  redis.call('HSET', KEYS[1], 'last_error',
    string.format('attempt %d: worker %s was lost', attempts, st[10] or 'unknown'))
else
  advance_head()
  redis.call('HINCRBY', KEYS[5], model .. ':queued', -1)
  redis.call('HINCRBY', KEYS[5], model .. ':running', 1)
  redis.call('HSET', KEYS[6], ARGV[1], entry_value(ARGV[8], 'running'))
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[3], 'lease', ARGV[4],
  'lease_until_ms', now + tonumber(ARGV[5]), 'started_ms', now, 'updated_ms', now)
redis.call('HDEL', KEYS[1], 'progress_percent', 'progress_message', 'progress_done',
  'progress_total', 'retry_at_ms')
-- The keys live another queue TTL (the one the gateway gave the job) from the start.
expire_job(KEYS[1], KEYS[2], tonumber(st[4] or '86400'))
redis.call('PUBLISH', ARGV[7], ARGV[8] .. ' running')
webhook_event(KEYS[1], 'running', 'job.running', ARGV[8], now)
local input = redis.call('GET', KEYS[2]) or ''
return {'ok', input, attempts, tonumber(st[3] or '0'), reclaimed}

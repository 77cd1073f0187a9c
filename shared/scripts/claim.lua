-- claim: queued -> running, under a new lease token. Called by a worker for each stream
-- entry it read; entries of jobs that will not run are acknowledged and deleted here.
-- KEYS: 1 job hash, 2 input, 3 model stream, 4 queues hash, 5 stats hash
-- ARGV: 1 entry id, 2 group, 3 worker, 4 token, 5 lease_ms, 6 model, 7 events channel,
--       8 job id
-- Returns {'ok', input, attempts, timeout_s} | {'gone'} | {'cancelled'} | {'skip', status}
local model = ARGV[6]
local function drop_entry()
  redis.call('XACK', KEYS[3], ARGV[2], ARGV[1])
  redis.call('XDEL', KEYS[3], ARGV[1])
end
local function advance_head(seq)
  local head = tonumber(redis.call('HGET', KEYS[4], model .. ':head') or '0')
  if seq and seq > head then redis.call('HSET', KEYS[4], model .. ':head', seq) end
end
local st = redis.call('HMGET', KEYS[1], 'status', 'queue_seq', 'timeout_s', 'queue_ttl_s')
if not st[1] then
  -- The job's keys expired while it waited: it was counted as queued.
  drop_entry()
  redis.call('HINCRBY', KEYS[5], model .. ':queued', -1)
  redis.call('HINCRBY', KEYS[5], model .. ':expired', 1)
  return {'gone'}
end
if st[1] == 'cancelled' then
  drop_entry()
  advance_head(tonumber(st[2]))
  return {'cancelled'}
end
if st[1] ~= 'queued' then
  return {'skip', st[1]}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
advance_head(tonumber(st[2]))
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[3], 'lease', ARGV[4],
  'lease_until_ms', now + tonumber(ARGV[5]), 'started_ms', now, 'updated_ms', now)
-- The keys live another queue TTL (the one the gateway gave the job) from the start.
local qttl = tonumber(st[4] or '86400')
redis.call('EXPIRE', KEYS[1], qttl)
redis.call('EXPIRE', KEYS[2], qttl)
redis.call('HINCRBY', KEYS[5], model .. ':queued', -1)
redis.call('HINCRBY', KEYS[5], model .. ':running', 1)
redis.call('PUBLISH', ARGV[7], ARGV[8] .. ' running')
local input = redis.call('GET', KEYS[2]) or ''
return {'ok', input, attempts, tonumber(st[3] or '0')}

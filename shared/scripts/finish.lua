-- finish: running -> succeeded | failed | cancelled. Only the current lease may write.
-- Stores the result, switches every key of the job to the result TTL, acknowledges and
-- deletes the stream entry (so the stream holds only undelivered and pending entries).
-- KEYS: 1 job hash, 2 input, 3 result, 4 model stream, 5 stats hash
-- ARGV: 1 token, 2 status, 3 result (msgpack or ""), 4 error (or ""), 5 entry id,
--       6 group, 7 model, 8 events channel, 9 job id
-- Returns 'ok' | 'stale'
local st = redis.call('HMGET', KEYS[1], 'status', 'lease', 'ttl_s')
if st[1] ~= 'running' or st[2] ~= ARGV[1] then return 'stale' end
local status = ARGV[2]
if status ~= 'succeeded' and status ~= 'failed' and status ~= 'cancelled' then
  return redis.error_reply('BADSTATUS ' .. status .. ' is not a final status')
end
local ttl = tonumber(st[3] or '86400')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'status', status, 'finished_ms', now, 'updated_ms', now)
redis.call('HDEL', KEYS[1], 'lease', 'lease_until_ms')
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[4]) end
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', ttl) end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('XACK', KEYS[4], ARGV[6], ARGV[5])
redis.call('XDEL', KEYS[4], ARGV[5])
local model = ARGV[7]
redis.call('HINCRBY', KEYS[5], model .. ':running', -1)
redis.call('HINCRBY', KEYS[5], model .. ':' .. status, 1)
redis.call('PUBLISH', ARGV[8], ARGV[9] .. ' ' .. status)
return 'ok'

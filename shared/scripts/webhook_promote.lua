-- webhook_promote: puts deliveries whose retry time has come back on the task stream.
-- KEYS: 1 retry set, 2 task stream
-- ARGV: 1 most to move
-- Returns how many were moved.
local retry_key, tasks_key = KEYS[1], KEYS[2]
local most = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', retry_key, '-inf', now_ms(), 'LIMIT', 0, most)
for _, msg in ipairs(due) do
  redis.call('ZREM', retry_key, msg)
  redis.call('XADD', tasks_key, '*', 'msg', msg)
end
return #due

-- webhook_promote: puts deliveries whose retry time has come back on the task stream.
-- KEYS: 1 retry set, 2 task stream
-- ARGV: 1 most to move
-- Returns how many were moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
for _, msg in ipairs(due) do
  redis.call('ZREM', KEYS[1], msg)
  redis.call('XADD', KEYS[2], '*', 'msg', msg)
end
return #due

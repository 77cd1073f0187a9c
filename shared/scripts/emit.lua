-- emit: one partial output of a running job (docs/protocol.md, "Partial outputs"),
-- appended to the job's outputs list, in order. Only the current lease may write. Bounded
-- per job: at most ARGV 3 outputs and ARGV 4 bytes of outputs in all; an emit over either
-- is refused with nothing written (the job goes on). The list lives as long as the job
-- hash: its TTL is the hash's at every emit, and end_job gives both the result TTL.
-- KEYS: 1 job hash, 2 outputs list, 3 webhook task stream
-- ARGV: 1 token, 2 output, 3 max outputs, 4 max bytes, 5 events channel, 6 job id,
--       7 webhook delivery key prefix, 8 webhook throttle ms
-- Returns {'ok', index} | {'cancel', index} (stored, and a cancel was requested)
-- | {'stale'} (this token no longer holds the job: nothing written)
-- | {'limit', 'count' | 'bytes', the limit} (refused, nothing written)
local job_key, outputs_key, tasks_key = KEYS[1], KEYS[2], KEYS[3]
local token, output = ARGV[1], ARGV[2]
local max_n, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local channel, id, delivery_prefix = ARGV[5], ARGV[6], ARGV[7]
local throttle_ms = tonumber(ARGV[8])
hooks.tasks, hooks.delivery_prefix, hooks.channel = tasks_key, delivery_prefix, channel
local st = redis.call('HMGET', job_key, 'status', 'lease', 'cancel_requested', 'out_n',
  'out_bytes', 'attempts', 'webhook', 'webhook_events', 'tenant', 'out_hook_ms')
if st[1] ~= 'running' or st[2] ~= token then return {'stale'} end
local n, bytes = tonumber(st[4] or '0'), tonumber(st[5] or '0')
if n >= max_n then return {'limit', 'count', max_n} end
if bytes + #output > max_bytes then return {'limit', 'bytes', max_bytes} end
local now = now_ms()
-- "<attempt> <output>": a job taken over from a lost worker starts again, and its
-- readers tell the attempts' outputs apart by this number.
redis.call('RPUSH', outputs_key, (st[6] or '1') .. ' ' .. output)
local ttl = redis.call('PTTL', job_key)
if ttl > 0 then redis.call('PEXPIRE', outputs_key, ttl) end
redis.call('HSET', job_key, 'out_n', n + 1, 'out_bytes', bytes + #output, 'updated_ms', now)
redis.call('PUBLISH', channel, id .. ' output')
-- job.output webhooks: at most one per throttle_ms per job (the receiver reads the
-- outputs it has not seen with GET /v1/jobs/{id}/outputs?after=N).
if st[7] and st[7] ~= '' and
   string.find(',' .. (st[8] or 'completed') .. ',', ',output,', 1, true) and
   (not st[10] or now - tonumber(st[10]) >= throttle_ms) then
  webhook_event(job_key, 'output', 'job.output', id, now, {st[7], st[8], st[9]})
  redis.call('HSET', job_key, 'out_hook_ms', now)
end
if st[3] == '1' then return {'cancel', n} end
return {'ok', n}

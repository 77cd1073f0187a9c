-- pause: an operator pauses or resumes a model (POST /v1/models/{model}/pause|resume) on
-- one shard (shards.h: the caller runs it on every shard, after checking that the model is
-- registered). While a model is paused its jobs still queue, but no worker takes one: the
-- shard's queues hash holds <model>:paused_ms (when it was paused), and claim.lua then
-- claims nothing of the model (an entry a worker read meanwhile stays pending, its job
-- queued) while feed.lua moves nothing from the wait lists. The mark lives with the shard's
-- streams, so a claim or a feed reads it in its own slot. Resuming deletes it and gives
-- each job left pending that way a fresh stream entry, so workers read it at once (rather
-- than take it over a lease later). Running jobs are not touched by either. Gateways are
-- told on the events channel ("models <model>") and read the models again.
-- KEYS: 1 queues hash, 2 model stream, 3 entries hash
-- ARGV: 1 model, 2 action ("pause" | "resume"), 3 group, 4 events channel, 5 job key prefix
--       ("{fleet}:job:"), 6 most pending entries a resume looks at
-- Returns {'ok', paused_ms (0: not paused now), requeued}
local queues_key, stream_key, entries_key = KEYS[1], KEYS[2], KEYS[3]
local model, action, group, channel, job_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local budget = tonumber(ARGV[6])
local field = model .. ':paused_ms'
local paused_ms = redis.call('HGET', queues_key, field)
local requeued = 0
if action == 'pause' then
  if not paused_ms then
    paused_ms = string.format('%d', now_ms())
    redis.call('HSET', queues_key, field, paused_ms)
  end
else
  paused_ms = nil
  redis.call('HDEL', queues_key, field)
  -- Entries read while paused and left pending: each job still queued gets a new entry.
  local pending = redis.pcall('XPENDING', stream_key, group, '-', '+', budget)
  if type(pending) == 'table' and not pending.err then
    for _, p in ipairs(pending) do
      local entry = p[1]
      local v = redis.call('HGET', entries_key, entry)
      if v then
        local id, state, owner = entry_job(v)
        local job = job_prefix .. id
        if state == 'queued' and redis.call('HGET', job, 'status') == 'queued' then
          drop_entry(stream_key, group, entries_key, entry)
          local fresh = redis.call('XADD', stream_key, '*', 'job', id)
          redis.call('HSET', entries_key, fresh, entry_value(id, 'queued', owner))
          redis.call('HSET', job, 'entry_id', fresh)
          requeued = requeued + 1
        end
      end
    end
  end
end
redis.call('PUBLISH', channel, 'models ' .. model)
return {'ok', tonumber(paused_ms or '0'), requeued}

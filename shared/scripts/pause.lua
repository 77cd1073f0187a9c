-- pause: an operator pauses or resumes a model (POST /v1/models/{model}/pause|resume).
-- While a model is paused its jobs still queue, but no worker takes one: its record in the
-- models hash holds paused_ms (when it was paused), and claim.lua then claims nothing of
-- the model (an entry a worker read meanwhile stays pending, its job queued) while feed.lua
-- moves nothing from the wait lists. Resuming deletes paused_ms and gives each job left
-- pending that way a fresh stream entry, so workers read it at once (rather than take it
-- over a lease later). Running jobs are not touched by either. Gateways are told on the
-- events channel ("models <model>") and read the records again.
-- KEYS: 1 models hash, 2 model stream, 3 entries hash
-- ARGV: 1 model, 2 action ("pause" | "resume"), 3 group, 4 events channel, 5 job key prefix
--       ("{fleet}:job:"), 6 most pending entries a resume looks at
-- Returns {'ok', paused_ms (0: not paused now), requeued} | {'missing'} (no record: the
--       model is not registered)
local models_key, stream_key, entries_key = KEYS[1], KEYS[2], KEYS[3]
local model, action, group, channel, job_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local budget = tonumber(ARGV[6])
local text = redis.call('HGET', models_key, model)
if not text then return {'missing'} end
-- The record is a JSON object (fleet/model_record.h); any other value reads as one without
-- fields, as every reader takes it.
local ok, rec = pcall(cjson.decode, text)
if not ok or type(rec) ~= 'table' then rec = {} end
local requeued = 0
if action == 'pause' then
  if not rec.paused_ms then
    rec.paused_ms = now_ms()
    redis.call('HSET', models_key, model, cjson.encode(rec))
  end
else
  if rec.paused_ms then
    rec.paused_ms = nil
    redis.call('HSET', models_key, model, cjson.encode(rec))
  end
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
return {'ok', rec.paused_ms or 0, requeued}

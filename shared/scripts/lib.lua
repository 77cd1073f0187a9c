-- lib.lua: helpers that embed.cmake puts before the scripts of this folder, so each
-- transition spells the shared steps the same way.
--
-- A line "--- name [name...]" starts a block: the names its definition makes, then the
-- block's comments and its definition, up to the next such line. A script gets only the
-- blocks whose names it uses, and those that these use, in this file's order (embed.cmake;
-- defining them costs Redis time at every call of the script). So a block is defined
-- before a block that uses it, and nothing but comments comes before the first block.

--- DEFAULT_TTL_S DEFAULT_MAX_ATTEMPTS DEFAULT_TIMEOUT_S DEFAULT_PRIORITY DEFAULT_TOMB_S
-- The protocol's defaults of a job's fields: the TTL in seconds of its keys (fields ttl_s
-- and queue_ttl_s), max_attempts, timeout_s ("0": no limit), priority and tomb_s (how long
-- its tombstone outlives its finished keys, "0": none; end_job). submit.lua
-- leaves a field that holds its default out of the job hash (a listpack entry costs its
-- bytes plus about 2 per name and per value), so every reader takes a missing field for
-- its default. As text, the way ARGV carries them and the hash stores them. libfleet
-- spells the same values in fleet/job.h (FLEET_JOB_DEFAULT_*): the unit test
-- job_defaults_test reads this block and compares.
local DEFAULT_TTL_S, DEFAULT_MAX_ATTEMPTS = '86400', '3'
local DEFAULT_TIMEOUT_S, DEFAULT_PRIORITY = '0', 'normal'
local DEFAULT_TOMB_S = '86400'

--- ttl_of
-- A TTL field of a job hash as a number of seconds.
local function ttl_of(v)
  return tonumber(v or DEFAULT_TTL_S)
end

--- now_ms
-- Redis' own clock in milliseconds: gateways and workers on other machines agree on it.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

--- drop_entry
-- Acknowledges and deletes a stream entry and forgets which job it carried. The stream
-- then holds only entries that are undelivered or pending, never an acknowledged one.
local function drop_entry(stream, group, entries, entry)
  if not entry or entry == '' then return end
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
  redis.call('HDEL', entries, entry)
end

--- count_expired
-- The counters of {fleet}:stats keep, per model, submitted = queued + running + succeeded
-- + failed + cancelled + expired (docs/redis.md): every script that moves a job moves one
-- count from the state it leaves to the one it enters, in the same script.

-- A job whose keys expired before it ended leaves the state it was counted in ('queued'
-- or 'running') for expired. Only the script that removes the job's last reference (its
-- stream entry, wait set or delayed set id) counts it, so it is counted once.
local function count_expired(stats, model, from)
  redis.call('HINCRBY', stats, model .. ':' .. from, -1)
  redis.call('HINCRBY', stats, model .. ':expired', 1)
end

--- entry_value
-- The value of a stream entry in the entries hash: '<id> <status> <tenant>', status
-- 'queued' or, once it was claimed, 'running', so that the script that finds the job's
-- keys expired knows which count the job was in and whose it was (its tombstone). Values
-- of protocol 4 and older: the id alone (queued) or '<id> running'.
local function entry_value(id, status, tenant)
  return id .. ' ' .. status .. ' ' .. (tenant or '')
end

--- entry_job
-- Reads an entries hash value: the job id, 'queued' or 'running', and the tenant (nil
-- when the value names none).
local function entry_job(v)
  local id, status, tenant = string.match(v, '^(%S+) (%S+) ?(%S*)$')
  if not id then return v, 'queued', nil end
  if status ~= 'running' then status = 'queued' end
  return id, status, tenant ~= '' and tenant or nil
end

--- expire_job
-- Gives a job's keys ttl seconds: its hash (which holds its input) and its
-- Idempotency-Key record (field idem_key), so the record never outlives the job it names
-- nor ends before it.
-- idem: the job's idem_key as the caller read it (false: none), or nil to read it here.
local function expire_job(job, ttl, idem)
  if idem == nil then idem = redis.call('HGET', job, 'idem_key') end
  redis.call('EXPIRE', job, ttl)
  if idem then redis.call('EXPIRE', idem, ttl) end
end

--- INPUT_PART INPUT_PARTS_MAX INPUT_PARTS_UNCOUNTED
-- The input lives in the job hash, cut into parts: fields in1..inN, N in field in_n when
-- N > INPUT_PARTS_UNCOUNTED (else no in_n: the parts are those of in1..in4 present; 8
-- bytes less for the common small input, read with the job's other fields by claim). An
-- input of up to INPUT_PARTS_MAX * INPUT_PART bytes is cut into parts of INPUT_PART bytes,
-- Redis' default hash-max-listpack-value, so the hash stays listpack-encoded (a 200-byte
-- value would turn the whole hash into a hashtable: about 1,500 B per queued job instead
-- of about 600, docs/redis.md). A longer input is one part: the hashtable's overhead is
-- then small next to the input.
local INPUT_PART, INPUT_PARTS_MAX, INPUT_PARTS_UNCOUNTED = 64, 32, 4

--- small_int
-- n (0 <= n < 100) in decimal. 'in' .. n would format the number with C's printf for
-- floating point (%.14g), which shows in Redis' profile of a submit.
local function small_int(n)
  if n < 10 then return string.char(48 + n) end
  return string.char(48 + math.floor(n / 10), 48 + n % 10)
end

--- input_fields
-- Appends the input's fields (in1..inN, and in_n if N > INPUT_PARTS_UNCOUNTED) to the
-- field list f of an HSET.
local function input_fields(f, input)
  local len = #input
  local size = INPUT_PART
  if len > INPUT_PART * INPUT_PARTS_MAX then size = len end
  local n = 0
  for at = 1, len, size do
    n = n + 1
    f[#f + 1] = 'in' .. small_int(n)
    f[#f + 1] = string.sub(input, at, at + size - 1)
  end
  if n > INPUT_PARTS_UNCOUNTED then
    f[#f + 1] = 'in_n'
    f[#f + 1] = small_int(n)
  end
end

--- read_input
-- The input of a job whose in_n field reads n (a string or number; nil: none).
local function read_input(job, n)
  n = tonumber(n or '0')
  if n == 0 then return '' end
  local names = {}
  for i = 1, n do names[i] = 'in' .. i end
  local parts = redis.call('HMGET', job, unpack(names))
  for i = 1, n do if not parts[i] then return '' end end
  return table.concat(parts)
end

--- job_fields
-- A job hash's fields as HGETALL returns them, without the input's parts and led by
-- {'id', id}: what the read-only scripts answer (the API never shows the input). The hash
-- holds no id field (its key names the job); one written by an older submit does, and is
-- not repeated.
local function job_fields(f, id)
  local out = {'id', id}
  for i = 1, #f, 2 do
    local k = f[i]
    if k ~= 'id' and
       not (string.sub(k, 1, 2) == 'in' and (k == 'in_n' or string.find(k, '^in%d+$'))) then
      out[#out + 1] = k
      out[#out + 1] = f[i + 1]
    end
  end
  return out
end

--- ready_count
-- Entries on a model stream that no worker has read yet (the stream holds only
-- undelivered and pending entries). Before any worker made the group, all of them.
local function ready_count(stream, group)
  local n = redis.call('XLEN', stream)
  if n == 0 then return 0 end
  local p = redis.pcall('XPENDING', stream, group)
  if type(p) == 'table' and p[1] then return n - p[1] end
  return n
end

--- enqueue
-- Puts a queued job on its model's queue, as submit.lua and retry.lua queue one: straight
-- onto the stream while its tenant has no backlog (its three wait lists, stem .. rank;
-- the job's own rank is looked at first, which under load is the one call it takes) and
-- fewer than target entries wait there undelivered; else at the tail of its rank's wait
-- list (high, normal, low: each in queue order), which workers feed from fairly
-- (feed.lua). No TTL on the wait lists: an id whose job expires in one is counted as
-- expired by the claim that reads its entry once feed.lua moved it (an expiring list would
-- take its ids out of the count for good). A tenant whose lists hold ids is on the waiting list (its stem): only this
-- helper adds ids to them, and only feed.lua takes the stem off the list, when it finds
-- them all empty, so only a tenant whose lists were all empty may be missing from it.
-- stem: "{fleet}:wait:<model>:<tenant>:"; rank '0', '1' or '2'. Returns the new stream
-- entry's id, or nil when the job went onto its wait list (a job without entry_id that
-- is not waiting for a retry is on the list of its rank: a cancel takes it out there).
local function enqueue(stream, entries, waiting, stem, rank, id, group, target, tenant)
  local backlog = redis.call('LLEN', stem .. rank) > 0
  if not backlog then
    for _, r in ipairs({'0', '1', '2'}) do
      if r ~= rank and redis.call('LLEN', stem .. r) > 0 then
        backlog = true
        break
      end
    end
  end
  if not backlog and ready_count(stream, group) < target then
    local entry = redis.call('XADD', stream, '*', 'job', id)
    redis.call('HSET', entries, entry, entry_value(id, 'queued', tenant))
    return entry
  end
  redis.call('RPUSH', stem .. rank, id)
  if not backlog and not redis.call('LPOS', waiting, stem) then
    redis.call('RPUSH', waiting, stem)
  end
  return nil
end

--- hooks
-- Webhooks: a script that can emit job events sets hooks.tasks (the delivery task stream,
-- KEYS), hooks.delivery_prefix (ARGV: "{fleet}:delivery:") and hooks.channel (the events
-- channel) before it calls end_job or webhook_event; and hooks.active_prefix ("{fleet}:
-- active:", a tenant's active set is that plus its name) so that end_job can take the
-- job off its tenant's active set.
-- Tombstones: a script that ends jobs sets hooks.gone_prefix ("{fleet}:gone:", ARGV) so
-- that end_job leaves one; without it (an older caller) end_job writes none. Storage
-- limits: it sets hooks.kept_prefix ("{fleet}:kept:", ARGV) so that end_job records a job
-- of a tenant with max_finished or max_bytes on the tenant's kept list (keep_finished).
local hooks = {}

--- GONE_BUCKET tomb_write tomb_flush
-- Tombstones (docs/redis.md): a job's is field <id> of the hash hooks.gone_prefix and the
-- first GONE_BUCKET characters of its id (its creation time, in units of 32.768 s), value
-- "<expired_at_ms> <gone_at_ms> <status> <tenant>". The hash lives as long as its longest
-- tombstone (EXPIRE NX, then GT); get ignores one whose gone_at has passed. A script that
-- ends a batch (finish) sets hooks.tombs = {} first and calls tomb_flush() at its end: one
-- HSET and two EXPIREs per bucket instead of a key per job.
local GONE_BUCKET = 7
local function tomb_write(id, value, ex)
  local key = hooks.gone_prefix .. string.sub(id, 1, GONE_BUCKET)
  if not hooks.tombs then
    redis.call('HSET', key, id, value)
    redis.call('EXPIRE', key, ex, 'NX')
    redis.call('EXPIRE', key, ex, 'GT')
    return
  end
  local b = hooks.tombs[key]
  if not b then
    b = {fv = {}, ex = ex}
    hooks.tombs[key] = b
  end
  b.fv[#b.fv + 1] = id
  b.fv[#b.fv + 1] = value
  if ex > b.ex then b.ex = ex end
end

local function tomb_flush()
  for key, b in pairs(hooks.tombs or {}) do
    redis.call('HSET', key, unpack(b.fv))
    redis.call('EXPIRE', key, b.ex, 'NX')
    redis.call('EXPIRE', key, b.ex, 'GT')
  end
  hooks.tombs = {}
end

--- webhook_event
-- Queues a webhook delivery when the job asked for this kind of event ('running',
-- 'progress', 'completed'): a delivery hash that gateways fill and update, and an entry on
-- the task stream that one gateway of the consumer group takes.
-- w: the job's {webhook, webhook_events, tenant} as the caller read them, or nil to read
-- them here.
local function webhook_event(job, kind, etype, id, now, w)
  if not hooks.tasks then return end
  if not w then w = redis.call('HMGET', job, 'webhook', 'webhook_events', 'tenant') end
  if not w[1] or w[1] == '' then return end
  if not string.find(',' .. (w[2] or 'completed') .. ',', ',' .. kind .. ',', 1, true) then
    return
  end
  local msg = 'msg_' .. id .. '_' .. redis.call('HINCRBY', job, 'webhook_seq', 1)
  local d = hooks.delivery_prefix .. msg
  redis.call('HSET', d, 'msg', msg, 'job', id, 'type', etype, 'ts', now, 'url', w[1],
    'tenant', w[3] or '', 'attempts', 0)
  redis.call('EXPIRE', d, 7 * 86400)
  redis.call('XADD', hooks.tasks, '*', 'msg', msg)
  redis.call('HSET', job, 'webhook_state', 'pending')
  -- Wakes the gateways' delivery loops (they also look every 200 ms).
  redis.call('PUBLISH', hooks.channel, id .. ' webhook')
end

--- OUTPUTS_SUFFIX
-- A job's partial outputs (emit.lua) are the list "<job key>:outputs" (keys.h's
-- FLEET_KEY_OUTPUTS_SUFFIX spells the same suffix); the job hash counts them in field
-- out_n and their bytes in out_bytes. The scripts that end, delete, evict or retry a job
-- build the key from the job's key, so a job without outputs costs them nothing.
local OUTPUTS_SUFFIX = ':outputs'

--- END_FIELDS
-- The fields of a job that end_job needs, in this order: a caller that reads the job
-- anyway reads these with it (HMGET) and passes them as f, saving the reads.
local END_FIELDS = {'ttl_s', 'idem_key', 'tenant', 'webhook', 'webhook_events', 'active',
  'tomb_s', 'keep', 'out_n'}

--- KEPT_BYTES_SUFFIX keep_finished
-- A tenant with max_finished or max_bytes (docs/api.md, "Storage limits") has a kept list
-- "{fleet}:kept:<tenant>" of its finished jobs in finish order, entries "<id>
-- <finished_ms> <bytes>", and the sum of their bytes in "{fleet}:kept:<tenant>:bytes"
-- (KEPT_BYTES_SUFFIX: keys.h's FLEET_KEY_KEPT_BYTES_SUFFIX). submit.lua marks such a
-- tenant's jobs with field keep (the input's bytes) and evicts the oldest entries while
-- the tenant is over a limit; a job without the mark costs nothing here. Both keys live
-- as long as the longest-lived job on the list (they expire together, so the sum always
-- matches the list). bytes: the input's (field keep) plus the result's.
local KEPT_BYTES_SUFFIX = ':bytes'
local function keep_finished(tenant, id, now, ttl, bytes)
  local list = hooks.kept_prefix .. tenant
  local total = list .. KEPT_BYTES_SUFFIX
  redis.call('RPUSH', list, id .. ' ' .. string.format('%d', tonumber(now)) .. ' ' ..
    string.format('%d', bytes))
  redis.call('INCRBY', total, string.format('%d', bytes))
  if redis.call('TTL', list) < tonumber(ttl) then
    redis.call('EXPIRE', list, ttl)
    redis.call('EXPIRE', total, ttl)
  end
end

--- end_job
-- Ends a job in a final status: every key on the result TTL, the counters moved from the
-- state it left, an event published, a webhook queued, and its tombstone written: the key
-- "{fleet}:gone:<id>" holding "<expires_at_ms> <status> <tenant>", which lives tomb_s
-- seconds longer than the job's keys, so that once they expired the gateway answers 410
-- Gone with when and how the job ended (get.lua), then 404. One SET per job; a job whose
-- tomb_s is "0" gets none. A later end of the same job (after a retry) overwrites it.
-- A running job keeps its last `lease` and `lease_until_ms`: the final status alone
-- refuses that token (renew, progress, finish and requeue check status and token), so
-- deleting them would be one more call per job for nothing, and they tell an operator
-- which lease ran it last. A job of a tenant with storage limits (field keep) goes onto
-- the tenant's kept list (keep_finished).
-- f: END_FIELDS as read by the caller, or nil to read them here. counted: the caller
-- moves the counters itself (a batch moves them once for all its jobs). events: nil to
-- publish the event now, or a list the caller publishes as one message for a batch.
-- result_len: the bytes of the result stored with it (finish), or nil.
-- Returns the job's TTL in seconds (the field's text).
local function end_job(job, stats, model, from, status, err, now, channel, id, f, counted,
                       events, result_len)
  if not f then f = redis.call('HMGET', job, unpack(END_FIELDS)) end
  local ttl = f[1] or DEFAULT_TTL_S
  if err and err ~= '' then
    redis.call('HSET', job, 'status', status, 'finished_ms', now, 'updated_ms', now, 'error', err)
  else
    redis.call('HSET', job, 'status', status, 'finished_ms', now, 'updated_ms', now)
  end
  -- Only a queued job may wait for a retry; a claim deletes retry_at_ms when it starts one.
  if from == 'queued' then redis.call('HDEL', job, 'retry_at_ms') end
  expire_job(job, ttl, f[2])
  -- Its partial outputs (field out_n: it emitted some) live as long as its hash.
  if f[9] then redis.call('EXPIRE', job .. OUTPUTS_SUFFIX, ttl) end
  local tomb = f[7] or DEFAULT_TOMB_S
  if hooks.gone_prefix and tomb ~= '0' then
    -- The times are the same for every job of a call with the same ttl_s and tomb_s:
    -- formatted once.
    local memo = hooks.tomb_memo or {}
    hooks.tomb_memo = memo
    local k = ttl .. ' ' .. tomb
    local m = memo[k]
    if not m then
      local ttl_n, tomb_n = tonumber(ttl), tonumber(tomb)
      local at = tonumber(now) + ttl_n * 1000
      m = {string.format('%d %d ', at, at + tomb_n * 1000), ttl_n + tomb_n}
      memo[k] = m
    end
    tomb_write(id, m[1] .. status .. ' ' .. (f[3] or ''), m[2])
  end
  if f[8] and hooks.kept_prefix and f[3] then
    keep_finished(f[3], id, now, ttl, tonumber(f[8]) + (result_len or 0))
  end
  if not counted then
    redis.call('HINCRBY', stats, model .. ':' .. from, -1)
    redis.call('HINCRBY', stats, model .. ':' .. status, 1)
  end
  if events then
    events[#events + 1] = id .. ' ' .. status
  else
    redis.call('PUBLISH', channel, id .. ' ' .. status)
  end
  -- No longer active for its tenant's max_active quota (field active: submit put it in
  -- the tenant's active set, which it does only for a tenant with that limit).
  if hooks.active_prefix and f[3] and f[6] then
    redis.call('ZREM', hooks.active_prefix .. f[3], id)
  end
  if f[4] and f[4] ~= '' then
    webhook_event(job, 'completed', 'job.' .. status, id, now, {f[4], f[5], f[3]})
  end
  return ttl
end

--- dead_letter
-- Records a failed job on the capped dead-letter stream and marks the job with it.
local function dead_letter(dlq, cap, job, stats, model, id, err, now)
  local f = redis.call('HMGET', job, 'tenant', 'attempts')
  local entry = redis.call('XADD', dlq, 'MAXLEN', cap, '*', 'job', id, 'model', model,
    'tenant', f[1] or '', 'attempts', f[2] or '0', 'error', err, 'failed_ms', now)
  redis.call('HSET', job, 'dead_lettered', '1', 'dlq_entry', entry)
  redis.call('HINCRBY', stats, model .. ':dead_lettered', 1)
end

--- cancel_running
-- The two exits of a running job that will not run again, shared by requeue (its worker
-- handed it back) and claim (its worker was lost). f: END_FIELDS, or nil (see end_job).
-- A cancel was requested while it ran: it ends cancelled.
local function cancel_running(job, stats, model, now, channel, id, f)
  end_job(job, stats, model, 'running', 'cancelled', 'cancelled by the client while running',
    now, channel, id, f)
end

--- fail_dead
-- It used all its attempts: it ends failed and goes on the dead-letter stream.
local function fail_dead(job, stats, dlq, cap, model, id, err, now, channel, f)
  end_job(job, stats, model, 'running', 'failed', err, now, channel, id, f)
  dead_letter(dlq, cap, job, stats, model, id, err, now)
end

--- gone_answer
-- The answer for a job whose hash is gone (get, outputs): its tombstone, field <id> of
-- gone_key, "<expired_at_ms> <gone_at_ms> <status> <tenant>" (the tenant last, as the
-- rest of the text), as {'gone', expired_at_ms, status} while it lasts and the tenant may
-- see it ('*': any), else {}. Its bucket may outlive it (it lives as long as its longest
-- tombstone).
local function gone_answer(gone_key, id, tenant)
  local g = gone_key and redis.call('HGET', gone_key, id)
  if not g then return {} end
  local at, gone_at, status, owner = string.match(g, '^(%d+) (%d+) (%S+) (.*)$')
  if not at or (tenant ~= '*' and owner ~= tenant) or now_ms() >= tonumber(gone_at) then
    return {}
  end
  return {'gone', at, status}
end

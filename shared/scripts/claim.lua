-- claim: queued -> running under a new lease token, for every entry of a batch in one call.
-- The entries are those the caller names (read with a blocking XREADGROUP, or taken over
-- with XAUTOCLAIM), and new ones the script reads itself (XREADGROUP without BLOCK) for
-- each triple whose entry id is empty: a worker under load reads and claims in one round
-- trip. Also the way back from a lost worker: an entry taken over with XAUTOCLAIM whose
-- job is still running under an expired lease starts a new attempt (running -> running),
-- or ends the job: cancelled when a cancel was requested, failed and dead-lettered when
-- max_attempts were used. Entries of jobs that will not run are acknowledged and deleted
-- here. What every job of the batch shares is done once: the clock, the queue head, the
-- queued -> running counters, the entries hash update, the "running" event (one message).
-- KEYS: 1 model stream, 2 queues hash, 3 stats hash, 4 entries hash, 5 dead-letter stream,
--       6 webhook task stream (a model paused on this shard, <model>:paused_ms in the
--       queues hash: nothing is claimed)
-- ARGV: 1 group, 2 worker, 3 lease_ms, 4 model, 5 events channel, 6 dead-letter cap,
--       7 webhook delivery key prefix, 8 active set key prefix, 9 job key prefix
--       ("{fleet}:job:"), 10 tombstone key prefix ("{fleet}:gone:"), 11 kept list key
--       prefix ("{fleet}:kept:"), then for each entry three: entry id (empty: the next new entry
--       of the stream, read here), job id (empty with it), lease token
-- Returns one reply per named entry, in order, then {entry id, job id, reply} per entry
--       read (at most one per empty entry id; the k-th entry read takes the k-th of their
--       tokens); a reply: {'ok', input, attempts, timeout_s, reclaimed 0|1, created_ms,
--       started_ms} (both Redis milliseconds as text; created_ms '' for a job without one)
--       | {'gone'} | {'cancelled'} | {'dead', error} | {'skip', why}
local stream_key, queues_key, stats_key, entries_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dlq_key, tasks_key = KEYS[5], KEYS[6]
local group, worker, lease_ms, model = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local channel, dlq_cap, delivery_prefix, active_prefix = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local job_prefix = ARGV[9]
local FIRST_ENTRY = 12 -- the ARGV index of the first entry's three
-- A model an operator paused (pause.lua: <model>:paused_ms in the queues hash) claims
-- nothing: each named entry stays pending with its job queued (a resume gives it a fresh
-- entry), and no new entry is read.
if redis.call('HEXISTS', KEYS[2], model .. ':paused_ms') == 1 then
  local skipped = {}
  for i = FIRST_ENTRY, #ARGV, 3 do
    if ARGV[i] ~= '' then skipped[#skipped + 1] = {'skip', 'model paused'} end
  end
  return skipped
end
hooks.active_prefix, hooks.gone_prefix, hooks.kept_prefix = active_prefix, ARGV[10], ARGV[11]
hooks.tasks, hooks.delivery_prefix, hooks.channel = tasks_key, delivery_prefix, channel
local now = now_ms()
-- Numbers written to every job are made text once (Lua would format them per call).
local now_s, lease_until_s = tostring(now), tostring(now + lease_ms)
-- What a queued job's start needs, its input's first parts included (most inputs fit in
-- them: one read per job); a lost worker's job reads LOST_FIELDS as well.
local FIELDS = {'status', 'entry_id', 'queue_seq', 'timeout_s', 'queue_ttl_s', 'attempts',
  'idem_key', 'webhook', 'progress_percent', 'retry_at_ms', 'created_ms', 'tenant', 'in_n',
  'in1', 'in2', 'in3', 'in4'}
-- the FIELDS index of in1, and how many parts FIELDS reads: every part of an input without
-- in_n
local IN_AT, IN_READ = 14, INPUT_PARTS_UNCOUNTED
local LOST_FIELDS = {'lease_until_ms', 'cancel_requested', 'worker', 'max_attempts',
  'ttl_s', 'tenant', 'webhook_events', 'active', 'tomb_s', 'keep', 'out_n'}
local started, reclaimed_n, top_seq = 0, 0, ''
local running_entries, events = {}, {}
local out = {}

-- Queue numbers are decimal text without leading zeros: the longer one is larger, and
-- among equal lengths the text order is the number order (no conversion per job).
local function seq_above(a, b)
  return #a > #b or (#a == #b and a > b)
end

-- The job's input from the fields FIELDS read: without in_n, the parts of in1..in4
-- present (lib.lua, INPUT_PARTS_UNCOUNTED); with it, in_n parts, those past IN_READ read
-- now.
local function input_of(job, st)
  local n = tonumber(st[IN_AT - 1])
  if n and n > IN_READ then return read_input(job, n) end
  local parts = {}
  for i = 1, n or IN_READ do
    local p = st[IN_AT + i - 1]
    if not p then
      if n then return '' end -- a part of a counted input is missing
      break
    end
    parts[i] = p
  end
  return table.concat(parts)
end

-- The running job of a lost worker (its lease expired): ends it, or returns the fields
-- of its next attempt's start (nil when it ended or is still some live worker's).
local function take_over(job, id, entry, st)
  local lf = redis.call('HMGET', job, unpack(LOST_FIELDS))
  if tonumber(lf[1] or '0') > now then return nil, {'skip', 'running under a live lease'} end
  reclaimed_n = reclaimed_n + 1
  local ended = {lf[5], st[7], lf[6], st[8], lf[7], lf[8], lf[9], lf[10], lf[11]} -- END_FIELDS
  if lf[2] == '1' then
    cancel_running(job, stats_key, model, now, channel, id, ended)
    drop_entry(stream_key, group, entries_key, entry)
    return nil, {'cancelled'}
  end
  local attempts, max = tonumber(st[6] or '0'), tonumber(lf[4] or DEFAULT_MAX_ATTEMPTS)
  if attempts >= max then
    local err = 'worker lost ' .. attempts .. ' times (the last one was ' ..
      (lf[3] or 'unknown') .. '); not retried'
    fail_dead(job, stats_key, dlq_key, dlq_cap, model, id, err, now, channel, ended)
    drop_entry(stream_key, group, entries_key, entry)
    return nil, {'dead', err}
  end
  redis.call('HSET', job, 'last_error',
    'attempt ' .. attempts .. ': worker ' .. (lf[3] or 'unknown') .. ' was lost')
  return 1
end

local function claim_one(entry, id, token)
  local job = job_prefix .. id
  local st = redis.call('HMGET', job, unpack(FIELDS))
  local status = st[1]
  if not status then
    -- The job's keys expired while it waited, or while it ran (a run longer than its
    -- queue TTL; the entry came back here after its lease): counted once, from the state
    -- its entry records, unless the entry was already dropped (a cancel took it out).
    local v = redis.call('HGET', entries_key, entry)
    drop_entry(stream_key, group, entries_key, entry)
    if v then
      local _, from, owner = entry_job(v)
      count_expired(stats_key, model, from)
      -- Its tombstone, so that its id answers 410 expired (its tenant's only) rather than
      -- 404: found now, kept the default tomb_s (the job's own went with its keys).
      if owner and hooks.gone_prefix and DEFAULT_TOMB_S ~= '0' then
        local tomb = tonumber(DEFAULT_TOMB_S)
        tomb_write(id, now_s .. ' ' .. string.format('%d', now + tomb * 1000) .. ' expired ' ..
          owner, tomb)
      end
    end
    return {'gone'}
  end
  -- An entry the job no longer uses (it was requeued onto a newer one). A queued job
  -- without entry_id was fed onto the stream (feed writes no field of the job: one write
  -- per job less) and this is its one entry; this claim records it.
  if st[2] and st[2] ~= entry then
    drop_entry(stream_key, group, entries_key, entry)
    return {'skip', 'stale entry'}
  end
  local seq = st[3] or ''
  if status == 'cancelled' then
    drop_entry(stream_key, group, entries_key, entry)
    if seq_above(seq, top_seq) then top_seq = seq end
    return {'cancelled'}
  end
  if status ~= 'queued' and status ~= 'running' then
    drop_entry(stream_key, group, entries_key, entry)
    return {'skip', status}
  end
  local reclaimed = 0
  if status == 'running' then
    local again, reply = take_over(job, id, entry, st)
    if not again then return reply end
    reclaimed = 1
  else
    if seq_above(seq, top_seq) then top_seq = seq end
    started = started + 1
    running_entries[#running_entries + 1] = entry
    running_entries[#running_entries + 1] = entry_value(id, 'running', st[12])
  end
  local attempts = tonumber(st[6] or '0') + 1
  redis.call('HSET', job, 'status', 'running', 'worker', worker, 'lease', token,
    'lease_until_ms', lease_until_s, 'started_ms', now_s, 'updated_ms', now_s,
    'attempts', attempts, 'entry_id', entry)
  -- Progress and a retry time are left only by an earlier attempt (progress_percent is
  -- written with the other progress fields).
  if st[9] or st[10] then
    redis.call('HDEL', job, 'progress_percent', 'progress_message', 'progress_done',
      'progress_total', 'retry_at_ms')
  end
  -- The keys live another queue TTL (the one the gateway gave the job) from the start.
  expire_job(job, st[5] or DEFAULT_TTL_S, st[7] or false)
  events[#events + 1] = id .. ' running'
  if st[8] and st[8] ~= '' then webhook_event(job, 'running', 'job.running', id, now) end
  return {'ok', input_of(job, st), attempts, st[4] or '0', reclaimed, st[11] or '', now_s}
end

-- A job id from a stream entry read here: a valid one is 26 characters of Crockford
-- base32, like every id the gateway makes (anything else could name another key).
local function valid_id(id)
  return id and #id == 26 and not string.find(id, '[^0-9A-HJKMNP-TV-Z]')
end

-- The new entries are read before anything is written: a refused read (NOGROUP: the
-- group vanished) answers an error and leaves every entry as it was.
local named, reads, list = {}, {}, {}
for i = FIRST_ENTRY, #ARGV, 3 do
  if ARGV[i] == '' then
    reads[#reads + 1] = ARGV[i + 2]
  else
    named[#named + 1] = i
  end
end
if #reads > 0 then
  local got = redis.pcall('XREADGROUP', 'GROUP', group, worker, 'COUNT', #reads, 'STREAMS',
    stream_key, '>')
  if type(got) == 'table' and got.err then return got end
  list = got and got[1] and got[1][2] or {}
end
for _, i in ipairs(named) do
  out[#out + 1] = claim_one(ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
for k = 1, #list do
  local entry, fields = list[k][1], list[k][2]
  local id
  for f = 1, #fields - 1, 2 do
    if fields[f] == 'job' then id = fields[f + 1] end
  end
  if valid_id(id) then
    out[#out + 1] = {entry, id, claim_one(entry, id, reads[k])}
  else
    -- An entry without a valid job id can never run; left pending, it would be taken
    -- over forever.
    drop_entry(stream_key, group, entries_key, entry)
    out[#out + 1] = {entry, '', {'skip', 'no valid job id'}}
  end
end
if top_seq ~= '' then
  local head = redis.call('HGET', queues_key, model .. ':head') or ''
  if seq_above(top_seq, head) then redis.call('HSET', queues_key, model .. ':head', top_seq) end
end
if started > 0 then
  redis.call('HINCRBY', stats_key, model .. ':queued', -started)
  redis.call('HINCRBY', stats_key, model .. ':running', started)
  redis.call('HSET', entries_key, unpack(running_entries))
end
if reclaimed_n > 0 then redis.call('HINCRBY', stats_key, model .. ':reclaimed', reclaimed_n) end
if #events > 0 then redis.call('PUBLISH', channel, table.concat(events, '\n')) end
return out

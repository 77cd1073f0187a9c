#!lua flags=no-writes
-- list (read only): a tenant's jobs, or every tenant's (an admin's list), newest first,
-- filtered, one page at a time.
-- KEYS: 1 tenant index (ARGV 7's; with "*", the caller's own), 2 queues hash, 3 tenants set
--       ("{fleet}:tenants")
-- ARGV: 1 cursor ("" = newest; else an index entry id "<ms>-<n>", and with "*" also
--       "<ms>-<n>.<tenant>"), 2 limit, 3 status filter ("": any; else one status or several
--       separated by commas, any of which matches), 4 model filter (""), 5 most index
--       entries to look at, 6 job key prefix ("{fleet}:job:"), 7 tenant ("*": every tenant
--       named in KEYS 3, and ARGV 10), 8 tenant index key prefix ("{fleet}:tenant:"),
--       9 tenant index key suffix (":submits"), 10 the caller's own tenant, 11 since, 12
--       until ("" or ms since the epoch: only jobs submitted from since to until, both
--       included, by the index entry ids; a cursor goes on below its entry, still above
--       since), 13 entries ("1": each job's fields end with the pair index_entry, the id of
--       the index entry that named it, by which a list merged across shards orders and
--       goes on; "": not), 14 tenants ("": the members of KEYS 3; else the tenants of
--       every tenant's list, separated by spaces, read by the caller from the control
--       tenants set: on a shard other than the control one KEYS 3 is then a key of the
--       shard's own slot, not read)
-- Returns {{fields...}, next_cursor ("" when the end was reached)}: each job's fields as
-- get.lua answers them (led by id; a field that holds its default absent), and for a
-- queued job in the queue (not waiting for a retry) a last field queue_position, the
-- number get.lua answers beside the fields (then index_entry when ARGV 13 asks for it)
--
-- The index is a stream of {j = job id} entries in submit order (submit.lua); the cursor
-- is the id of the last entry a page looked at, and the next page starts just below it
-- (XREVRANGE's exclusive "(" start). Every tenant's list merges the tenants' indexes by
-- entry id (the same id in two indexes: the greater tenant name first), each read a few
-- entries at a time as the merge reaches them; its cursor "<ms>-<n>" goes on below that
-- id in every index, and "<ms>-<n>.<tenant>" (only when another index holds the same id
-- still to come) below that entry of that tenant's index.
local index_key, queues_key, tenants_key = KEYS[1], KEYS[2], KEYS[3]
local cursor, limit, status_filter, model_filter = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local budget, job_prefix, tenant = tonumber(ARGV[5]), ARGV[6], ARGV[7]
-- The time bounds as XREVRANGE takes them: an entry id of ms alone is the first id of that
-- millisecond as the lower bound and the last as the upper one, so both are included.
local since = ARGV[11] ~= '' and ARGV[11] or '-'
local until_id = ARGV[12] ~= '' and ARGV[12] or '+'
local with_entries = ARGV[13] == '1'
local out = {}
local last = ''
local exhausted = false
local filtered = status_filter ~= '' or model_filter ~= ''
-- The statuses that match, as a set (nil: any).
local statuses
if status_filter ~= '' then
  statuses = {}
  for st in string.gmatch(status_filter, '[^,]+') do statuses[st] = true end
end
-- Each model's queue head, read once per call (get.lua's queue_position).
local heads = {}
local function queue_position(model, seq)
  if not heads[model] then
    heads[model] = tonumber(redis.call('HGET', queues_key, model .. ':head') or '0')
  end
  local pos = tonumber(seq) - heads[model]
  if pos < 1 then pos = 1 end
  return pos
end
-- Adds job id, named by owner's index entry entry_id, to the page when it still exists, is
-- owner's and matches the filters.
local function look(id, owner, entry_id)
  local key = job_prefix .. id
  local f = {}
  if not filtered then
    f = redis.call('HGETALL', key)
  else
    -- A filter may skip most jobs: three fields first, the whole hash only for a match.
    local h = redis.call('HMGET', key, 'status', 'model', 'tenant')
    if h[3] == owner and (not statuses or statuses[h[1]]) and
       (model_filter == '' or model_filter == h[2]) then
      f = redis.call('HGETALL', key)
    end
  end
  if #f == 0 then return end
  local status, model, who, seq, retry_at
  for i = 1, #f, 2 do
    local k = f[i]
    if k == 'status' then status = f[i + 1]
    elseif k == 'model' then model = f[i + 1]
    elseif k == 'tenant' then who = f[i + 1]
    elseif k == 'queue_seq' then seq = f[i + 1]
    elseif k == 'retry_at_ms' then retry_at = true end
  end
  if who == owner and (not statuses or statuses[status]) and
     (model_filter == '' or model_filter == model) then
    local jf = job_fields(f, id)
    if status == 'queued' and seq and not retry_at then
      jf[#jf + 1] = 'queue_position'
      jf[#jf + 1] = string.format('%d', queue_position(model, seq))
    end
    if with_entries then
      jf[#jf + 1] = 'index_entry'
      jf[#jf + 1] = entry_id
    end
    out[#out + 1] = jf
  end
end

if tenant ~= '*' then
  -- One tenant's index. Entries read per call: at first as many as the page lacks (a page
  -- whose jobs all match takes one call, and Redis turns each entry it returns into two
  -- Lua tables), then twice as many each call, up to 100, while a filter skips jobs.
  local max = cursor == '' and until_id or ('(' .. cursor)
  local n = limit
  while #out < limit and budget > 0 do
    n = math.min(n, budget)
    local entries = redis.call('XREVRANGE', index_key, max, since, 'COUNT', n)
    if #entries == 0 then exhausted = true break end
    for _, e in ipairs(entries) do
      budget = budget - 1
      last = e[1]
      -- e[2] is the entry's field list: {'j', id}.
      look(e[2][2], tenant, e[1])
      if #out >= limit then break end
    end
    if #entries < n and #out < limit then exhausted = true break end
    max = '(' .. last
    n = math.min(n * 2, 100)
  end
  if exhausted then last = '' end
  -- A full page whose last entry is the index's oldest still answers a cursor; the next
  -- page is then empty, which is cheaper than looking ahead.
  return {out, last}
end

-- Every tenant's jobs: a merge of the indexes of the tenants of KEYS 3 and the caller's
-- own, newest entry first. Each index is a source with a buffer of the entries read from
-- it (at first a share of the page, then twice as many per read, up to 100), kept in a
-- binary heap by its buffer's first entry, so each entry taken costs O(log tenants).
local index_prefix, index_suffix, own = ARGV[8], ARGV[9], ARGV[10]
local names = {}
if ARGV[14] and ARGV[14] ~= '' then
  for t in string.gmatch(ARGV[14], '[^ ]+') do names[#names + 1] = t end
else
  names = redis.call('SMEMBERS', tenants_key)
end
local seen = {}
local tenants = {}
for _, t in ipairs(names) do
  if not seen[t] then seen[t] = true tenants[#tenants + 1] = t end
end
if not seen[own] then tenants[#tenants + 1] = own end
local c_id, c_t
if cursor ~= '' then
  c_id, c_t = string.match(cursor, '^(%d+-%d+)%.(.+)$')
  if not c_id then c_id = cursor end
end
local share = math.max(1, math.ceil(limit / #tenants))
-- Newest first; the same entry id in two indexes: the greater tenant name first.
local function before(a, b)
  if a.ms ~= b.ms then return a.ms > b.ms end
  if a.n ~= b.n then return a.n > b.n end
  return a.t > b.t
end
-- Makes s.buf[s.i] its head (reading more of its index when the buffer is used up);
-- false when its index has no more entries.
local function fill(s)
  if s.i > #s.buf then
    if s.done then return false end
    local entries = redis.call('XREVRANGE', s.key, s.max, since, 'COUNT', s.count)
    if #entries < s.count then s.done = true end
    if #entries == 0 then return false end
    s.buf, s.i = entries, 1
    s.max = '(' .. entries[#entries][1]
    s.count = math.min(s.count * 2, 100)
  end
  local ms, n = string.match(s.buf[s.i][1], '^(%d+)-(%d+)$')
  s.ms, s.n = tonumber(ms), tonumber(n)
  return true
end
local heap = {}
local function sift_down(i)
  local size = #heap
  while true do
    local l, r, top = 2 * i, 2 * i + 1, i
    if l <= size and before(heap[l], heap[top]) then top = l end
    if r <= size and before(heap[r], heap[top]) then top = r end
    if top == i then return end
    heap[i], heap[top] = heap[top], heap[i]
    i = top
  end
end
local function sift_up(i)
  while i > 1 do
    local p = math.floor(i / 2)
    if not before(heap[i], heap[p]) then return end
    heap[i], heap[p] = heap[p], heap[i]
    i = p
  end
end
for _, t in ipairs(tenants) do
  -- Below the cursor: an index whose name sorts below the cursor's still has the
  -- cursor's own entry id to give; the others start under it.
  local max = until_id
  if c_id then max = (c_t and t < c_t) and c_id or ('(' .. c_id) end
  local s = {t = t, key = index_prefix .. t .. index_suffix, max = max, count = share,
             buf = {}, i = 1}
  if fill(s) then
    heap[#heap + 1] = s
    sift_up(#heap)
  end
end
local last_ms, last_n, last_t
while #out < limit and budget > 0 and #heap > 0 do
  local s = heap[1]
  local e = s.buf[s.i]
  budget = budget - 1
  last, last_ms, last_n, last_t = e[1], s.ms, s.n, s.t
  look(e[2][2], s.t, e[1])
  s.i = s.i + 1
  if not fill(s) then
    heap[1] = heap[#heap]
    heap[#heap] = nil
  end
  if #heap > 0 then sift_down(1) end
end
-- The heap's head is the newest entry left in any index: only when it has the entry id
-- of the last one looked at does the cursor need the tenant to go on from.
if #heap == 0 then last = ''
elseif heap[1].ms == last_ms and heap[1].n == last_n then last = last .. '.' .. last_t end
return {out, last}

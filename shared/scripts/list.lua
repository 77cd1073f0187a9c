#!lua flags=no-writes
-- list (read only): a tenant's jobs, newest first, filtered, one page at a time.
-- KEYS: 1 tenant index, 2 queues hash
-- ARGV: 1 cursor ("" = newest; else an index entry id "<ms>-<n>"), 2 limit, 3 status
--       filter ("": any; else one status or several separated by commas, any of which
--       matches), 4 model filter (""), 5 most index entries to look at, 6 job key prefix
--       ("{fleet}:job:"), 7 tenant
-- Returns {{fields...}, next_cursor ("" when the end was reached)}: each job's fields as
-- get.lua answers them (led by id; a field that holds its default absent), and for a
-- queued job in the queue (not waiting for a retry) a last field queue_position, the
-- number get.lua answers beside the fields
--
-- The index is a stream of {j = job id} entries in submit order (submit.lua); the cursor
-- is the id of the last entry a page looked at, and the next page starts just below it
-- (XREVRANGE's exclusive "(" start).
local index_key, queues_key = KEYS[1], KEYS[2]
local cursor, limit, status_filter, model_filter = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local budget, job_prefix, tenant = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local max = cursor == '' and '+' or ('(' .. cursor)
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
-- Entries read per call: at first as many as the page lacks (a page whose jobs all match
-- takes one call, and Redis turns each entry it returns into two Lua tables), then twice
-- as many each call, up to 100, while a filter skips jobs.
local n = limit
while #out < limit and budget > 0 do
  n = math.min(n, budget)
  local entries = redis.call('XREVRANGE', index_key, max, '-', 'COUNT', n)
  if #entries == 0 then exhausted = true break end
  for _, e in ipairs(entries) do
    budget = budget - 1
    last = e[1]
    -- e[2] is the entry's field list: {'j', id}.
    local id = e[2][2]
    local key = job_prefix .. id
    local f = {}
    if not filtered then
      f = redis.call('HGETALL', key)
    else
      -- A filter may skip most jobs: three fields first, the whole hash only for a match.
      local h = redis.call('HMGET', key, 'status', 'model', 'tenant')
      if h[3] == tenant and (not statuses or statuses[h[1]]) and
         (model_filter == '' or model_filter == h[2]) then
        f = redis.call('HGETALL', key)
      end
    end
    if #f > 0 then
      local status, model, owner, seq, retry_at
      for i = 1, #f, 2 do
        local k = f[i]
        if k == 'status' then status = f[i + 1]
        elseif k == 'model' then model = f[i + 1]
        elseif k == 'tenant' then owner = f[i + 1]
        elseif k == 'queue_seq' then seq = f[i + 1]
        elseif k == 'retry_at_ms' then retry_at = true end
      end
      if owner == tenant and (not statuses or statuses[status]) and
         (model_filter == '' or model_filter == model) then
        local jf = job_fields(f, id)
        if status == 'queued' and seq and not retry_at then
          jf[#jf + 1] = 'queue_position'
          jf[#jf + 1] = string.format('%d', queue_position(model, seq))
        end
        out[#out + 1] = jf
        if #out >= limit then break end
      end
    end
  end
  if #entries < n and #out < limit then exhausted = true break end
  max = '(' .. last
  n = math.min(n * 2, 100)
end
if exhausted then last = '' end
-- A full page whose last entry is the index's oldest still answers a cursor; the next page
-- is then empty, which is cheaper than looking ahead.
return {out, last}

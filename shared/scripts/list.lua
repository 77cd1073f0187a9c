#!lua flags=no-writes
-- list (read only): a tenant's jobs, newest first, filtered, one page at a time.
-- KEYS: 1 tenant index, 2 queues hash
-- ARGV: 1 cursor ("" = newest; else an index entry id "<ms>-<n>"), 2 limit, 3 status
--       filter (""), 4 model filter (""), 5 most index entries to look at, 6 job key prefix
--       ("{fleet}:job:"), 7 tenant
-- Returns {{fields...}, next_cursor ("" when the end was reached)}: each job's fields as
-- get.lua answers them (led by id; a field that holds its default absent)
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
      if h[3] == tenant and (status_filter == '' or status_filter == h[1]) and
         (model_filter == '' or model_filter == h[2]) then
        f = redis.call('HGETALL', key)
      end
    end
    if #f > 0 then
      local status, model, owner
      for i = 1, #f, 2 do
        if f[i] == 'status' then status = f[i + 1]
        elseif f[i] == 'model' then model = f[i + 1]
        elseif f[i] == 'tenant' then owner = f[i + 1] end
      end
      if owner == tenant and (status_filter == '' or status_filter == status) and
         (model_filter == '' or model_filter == model) then
        out[#out + 1] = job_fields(f, id)
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

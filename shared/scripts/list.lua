#!lua flags=no-writes
-- list (read only): a tenant's jobs, newest first, filtered, one page at a time.
-- KEYS: 1 tenant index, 2 queues hash
-- ARGV: 1 cursor ("" = newest), 2 limit, 3 status filter (""), 4 model filter (""),
--       5 most index entries to look at, 6 job key prefix ("{fleet}:job:"), 7 tenant
-- Returns {{fields...}, next_cursor ("" when the end was reached)}
local index_key, queues_key = KEYS[1], KEYS[2]
local cursor, limit, status_filter, model_filter = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local budget, job_prefix, tenant = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local max = cursor == '' and '+' or ('(' .. cursor)
local out = {}
local last = ''
local exhausted = false
while #out < limit and budget > 0 do
  local n = math.min(budget, 100)
  local ids = redis.call('ZREVRANGEBYLEX', index_key, max, '-', 'LIMIT', 0, n)
  if #ids == 0 then exhausted = true break end
  for _, id in ipairs(ids) do
    budget = budget - 1
    last = id
    local f = redis.call('HGETALL', job_prefix .. id)
    if #f > 0 then
      local status, model, owner
      for i = 1, #f, 2 do
        if f[i] == 'status' then status = f[i + 1]
        elseif f[i] == 'model' then model = f[i + 1]
        elseif f[i] == 'tenant' then owner = f[i + 1] end
      end
      if owner == tenant and (status_filter == '' or status_filter == status) and
         (model_filter == '' or model_filter == model) then
        out[#out + 1] = job_fields(f)
        if #out >= limit then break end
      end
    end
  end
  if #ids < n and #out < limit then exhausted = true break end
  max = '(' .. last
end
if exhausted then last = '' end
-- A full page whose last id is the index's oldest still answers a cursor; the next page
-- is then empty, which is cheaper than looking ahead.
return {out, last}

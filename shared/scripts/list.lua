#!lua flags=no-writes
-- list (read only): a tenant's jobs, newest first, filtered, one page at a time.
-- KEYS: 1 tenant index, 2 queues hash
-- ARGV: 1 cursor ("" = newest), 2 limit, 3 status filter (""), 4 model filter (""),
--       5 most index entries to look at, 6 job key prefix ("{fleet}:job:"), 7 tenant
-- Returns {{fields...}, next_cursor ("" when the end was reached)}
local max = ARGV[1] == '' and '+' or ('(' .. ARGV[1])
local limit = tonumber(ARGV[2])
local budget = tonumber(ARGV[5])
local out = {}
local last = ''
local exhausted = false
while #out < limit and budget > 0 do
  local n = math.min(budget, 100)
  local ids = redis.call('ZREVRANGEBYLEX', KEYS[1], max, '-', 'LIMIT', 0, n)
  if #ids == 0 then exhausted = true break end
  for _, id in ipairs(ids) do
    budget = budget - 1
    last = id
    local f = redis.call('HGETALL', ARGV[6] .. id)
    if #f > 0 then
      local status, model, tenant
      for i = 1, #f, 2 do
        if f[i] == 'status' then status = f[i + 1]
        elseif f[i] == 'model' then model = f[i + 1]
        elseif f[i] == 'tenant' then tenant = f[i + 1] end
      end
      if tenant == ARGV[7] and (ARGV[3] == '' or ARGV[3] == status) and
         (ARGV[4] == '' or ARGV[4] == model) then
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

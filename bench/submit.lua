-- wrk script: the same request fleet-bench's submit benchmark sends, for comparison.
--   wrk -t2 -c50 -d10s -s bench/submit.lua http://127.0.0.1:8080
-- It also counts answers other than 202, which wrk alone reports only as "Non-2xx".
wrk.method = "POST"
wrk.path = "/v1/jobs"
wrk.body = '{"model":"echo","input":{"text":"hello"}}'
wrk.headers["Content-Type"] = "application/json"
-- bench/run.sh exports FLEET_API_KEY (a tenant made for the run).
local key = os.getenv("FLEET_API_KEY")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  not202 = 0
end

function response(status, headers, body)
  if status ~= 202 then not202 = not202 + 1 end
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("not202") end
  io.write(string.format("responses other than 202: %d\n", n))
  io.write(string.format("latency p50 %.2f ms, p99 %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end

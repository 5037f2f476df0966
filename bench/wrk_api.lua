-- wrk script for the read API (bench/api_bench.py).
-- Arguments (after --):
--   post <api key> <path> <field> <ids file> <ids per body> <bodies per thread>
--       POST <path> with {"<field>": [...]} of random ids from the file (POST /api/orders/enrich
--       with orderIds, POST /api/stats/customers with customerIds); the bodies are built here,
--       once per thread, and cycled.
--   get <api key> <path>
--       GET <path> (e.g. /api/customers?tier=gold&limit=50).

local threads = {}
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_no", next_thread)
  table.insert(threads, thread)
end

local mode = "get"
local key = ""
local path = "/"
local bodies = {}
local sent = 0
non200 = 0

function init(args)
  mode = args[1]
  key = args[2]
  if mode == "post" then
    path = args[3]
    local field = args[4]
    local ids = {}
    for line in io.lines(args[5]) do
      if #line > 0 then
        ids[#ids + 1] = line
      end
    end
    local per_body = tonumber(args[6]) or 250
    local count = tonumber(args[7]) or 50
    math.randomseed(1000 + (thread_no or 0))
    for b = 1, count do
      local picked = {}
      for i = 1, per_body do
        picked[i] = '"' .. ids[math.random(#ids)] .. '"'
      end
      bodies[b] = '{"' .. field .. '":[' .. table.concat(picked, ",") .. "]}"
    end
  else
    path = args[3]
  end
end

function request()
  sent = sent + 1
  local headers = { ["Authorization"] = "Bearer " .. key, ["Accept"] = "application/json" }
  if mode == "post" then
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", path, headers, bodies[((sent - 1) % #bodies) + 1])
  end
  return wrk.format("GET", path, headers)
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non200") or 0)
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non200":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, bad, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end

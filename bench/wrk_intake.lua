-- wrk script for POST /webhooks/shopify (bench/intake_bench.py).
-- Arguments (after --): <deliveries file> <run tag> <shop domain>
-- Each line of the file: webhook id, event id, topic, triggered-at, HMAC, body (tab-separated; the
-- body is compact JSON, which holds no raw tab or newline). Every thread cycles through the file;
-- the webhook id gets the run tag, the thread number and a counter appended, so that every request
-- is a new delivery (the HMAC covers the body only, so the signature stays valid).

local threads = {}
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_no", next_thread)
  table.insert(threads, thread)
end

local deliveries = {}
local count = 0
local sent = 0
local tag = "run"
local shop = "bench-shop.myshopify.com"
non200 = 0

function init(args)
  local path = args[1]
  tag = args[2] or tag
  shop = args[3] or shop
  for line in io.lines(path) do
    local wid, eid, topic, triggered, hmac, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    if wid then
      count = count + 1
      deliveries[count] = { wid = wid, eid = eid, topic = topic, triggered = triggered, hmac = hmac, body = body }
    end
  end
  if count == 0 then
    error("no deliveries in " .. tostring(path))
  end
end

function request()
  sent = sent + 1
  local d = deliveries[((sent - 1) % count) + 1]
  local headers = {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "Shopify-Captain-Hook",
    ["X-Shopify-Topic"] = d.topic,
    ["X-Shopify-Hmac-Sha256"] = d.hmac,
    ["X-Shopify-Shop-Domain"] = shop,
    ["X-Shopify-API-Version"] = "2026-04",
    ["X-Shopify-Webhook-Id"] = d.wid .. "-" .. tag .. "-" .. thread_no .. "-" .. sent,
    ["X-Shopify-Event-Id"] = d.eid,
    ["X-Shopify-Triggered-At"] = d.triggered,
  }
  return wrk.format("POST", "/webhooks/shopify", headers, d.body)
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

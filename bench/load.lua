-- wrk script for every benchmark phase; bench/run.py sets what it sends through the environment.
-- BENCH_MODE: baseline | deposit | hot | transfer | balance; BENCH_HOSTS: host:port,... (one per wrk thread,
-- round robin); BENCH_TOKEN: bearer token; BENCH_PREFIX and BENCH_ACCOUNTS: accounts PREFIX0 .. PREFIX(N-1).
local mode = os.getenv("BENCH_MODE")
local token = os.getenv("BENCH_TOKEN")
local prefix = os.getenv("BENCH_PREFIX")
local accounts = tonumber(os.getenv("BENCH_ACCOUNTS"))
local hosts = {}
for host in string.gmatch(os.getenv("BENCH_HOSTS"), "[^,]+") do
  table.insert(hosts, host)
end
local started = 0

function setup(thread)
  local host, port = hosts[(started % #hosts) + 1]:match("([^:]+):(%d+)")
  thread.addr = wrk.lookup(host, port)[1]
  thread:set("thread_id", started)
  started = started + 1
end

function init(args)
  math.randomseed(thread_id * 7919 + 17)
  wrk.headers["Authorization"] = "Bearer " .. token
end

function request()
  local n = math.random(0, accounts - 1)
  if mode == "baseline" then
    return wrk.format("GET", "/getAmount/b1/" .. prefix .. n)
  elseif mode == "deposit" or mode == "hot" then
    return wrk.format("POST", "/deposit/" .. prefix .. n .. "/1.00")
  elseif mode == "balance" then
    return wrk.format("GET", "/balance/" .. prefix .. n)
  end
  local m = (n + math.random(1, accounts - 1)) % accounts
  return wrk.format("POST", "/transfer/" .. prefix .. n .. "/" .. prefix .. m .. "/0.01")
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end

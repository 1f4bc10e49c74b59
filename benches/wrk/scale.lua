-- A fixed form POST (as post.lua) spread over several instances: wrk thread
-- i sends to instance i mod N, so each instance gets the same number of
-- connections (bench.py reads each instance's own count from its /metrics).
-- Environment: BENCH_BODY_FILE, BENCH_AUTH (as post.lua), BENCH_ADDRS
-- ("127.0.0.1:port,127.0.0.1:port,..."), BENCH_THREADS (wrk's -t).
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
local report = require("report")

report.fixed_post()

local addrs = {}
for a in string.gmatch(os.getenv("BENCH_ADDRS"), "[^,]+") do
  local host, port = string.match(a, "^(.+):(%d+)$")
  addrs[#addrs + 1] = wrk.lookup(host, port)[1]
end

local next_id = 0

function setup(thread)
  thread.addr = addrs[(next_id % #addrs) + 1]
  next_id = next_id + 1
end

function done(summary, latency, requests)
  report.line(summary, latency, 0)
end

-- Shared by the wrk scripts of benches/run.sh: prints one machine-readable
-- line with the run's figures (latency in microseconds) for bench.py.
local report = {}

function report.line(summary, latency, extra)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"status_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"timeouts":%d,"starved":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout, extra or 0))
end

-- Sets wrk up for a fixed form POST: BENCH_BODY_FILE (the urlencoded body),
-- BENCH_AUTH (the whole Authorization header value).
function report.fixed_post()
  local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
end

return report

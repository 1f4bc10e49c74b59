-- A fixed form POST with HTTP Basic client authentication, for wrk.
-- Environment: BENCH_BODY_FILE (the urlencoded body), BENCH_AUTH (the whole
-- Authorization header value). The path is in wrk's URL.
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
local report = require("report")

report.fixed_post()

function done(summary, latency, requests)
  report.line(summary, latency, 0)
end

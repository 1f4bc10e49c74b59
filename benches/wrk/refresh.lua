-- The refresh_token grant with rotation, for wrk. Every refresh token is
-- single-use (presenting one again revokes its grant), so a fixed body cannot
-- work: each thread keeps a queue of unused refresh tokens, seeded with one per
-- connection (BENCH_TOKENS_FILE, one a line); request() takes one, response()
-- puts back the new one from the JSON answer. A connection's response() always
-- runs before its next request(), so the queue never runs dry while every
-- answer carries a token; a request that finds it empty ("starved") sends a
-- dummy token, is refused, and is reported (an error answer loses a token).
-- Environment: BENCH_TOKENS_FILE, BENCH_AUTH, BENCH_THREADS.
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
local report = require("report")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")

-- Main state: hands each thread its share of the seed tokens.
local threads = {}
local seeds = nil

function setup(thread)
  if seeds == nil then
    local n = tonumber(os.getenv("BENCH_THREADS"))
    seeds = {}
    for i = 1, n do seeds[i] = {} end
    local i = 0
    for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
      if #line > 0 then
        seeds[(i % n) + 1][#seeds[(i % n) + 1] + 1] = line
        i = i + 1
      end
    end
  end
  table.insert(threads, thread)
  thread:set("seed", table.concat(seeds[#threads] or {}, " "))
  -- wrk 4 calls request() once in its first thread's state, right after
  -- init(), to check the script (script_verify_request); that call is not
  -- sent and must not take a token.
  thread:set("checking", #threads == 1)
end

-- Thread state.
local queue, head, tail = nil, 1, 0
starved = 0

function init(args)
  queue = {}
  for t in string.gmatch(seed or "", "%S+") do
    tail = tail + 1
    queue[tail] = t
  end
end

function request()
  local t = "starved"
  if queue == nil or checking then
    checking = false
    t = "check"
  elseif head <= tail then
    t = queue[head]
    queue[head] = nil
    head = head + 1
  else
    starved = starved + 1
  end
  return wrk.format(nil, nil, nil, "grant_type=refresh_token&refresh_token=" .. t)
end

function response(status, headers, body)
  local t = string.match(body, '"refresh_token"%s*:%s*"([^"]+)"')
  if t then
    tail = tail + 1
    queue[tail] = t
  end
end

function done(summary, latency, requests)
  local n = 0
  for _, thread in ipairs(threads) do
    n = n + (tonumber(thread:get("starved")) or 0)
  end
  report.line(summary, latency, n)
end

-- Shared done(): prints the run as one JSON line after wrk's own report, so the suite reads
-- exact percentiles (wrk's text report rounds them). Loaded by the other scripts via dofile.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nBENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,' ..
    '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end

-- Paced runs (Target.pace_ms, BENCH_PACE_MS): each connection waits that many milliseconds
-- after an answer before its next request (wrk calls delay() before each request it sends).
local pace = tonumber(os.getenv("BENCH_PACE_MS") or "0") or 0
if pace > 0 then
  function delay()
    return pace
  end
end

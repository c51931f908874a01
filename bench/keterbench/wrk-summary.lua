-- Prints one summary line keterbench parses. No response() callback, so
-- wrk keeps its fast path; non-2xx below 400 is not counted (non2xx=-1).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "KETERBENCH requests=%d duration_us=%d non2xx=-1 status=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

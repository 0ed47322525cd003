-- Appended to every script: one machine-readable line after wrk's own summary.
function done(summary, latency, requests)
  io.write(string.format(
    "BENCH requests=%d seconds=%.3f p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50),
    latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, summary.errors.status))
end

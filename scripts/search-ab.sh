#!/usr/bin/env bash
# Interleaved A/B of cold search between two `lokiz` binaries on the same data
# (docs/BENCHMARKS.md, "Prefixes as index ranges"). By hand, not in CI:
#
#   lokiz-bench run --only search --feed-videos 300000 --keep-database   # prints the database
#   apt-get install -y wrk
#   scripts/search-ab.sh BEFORE_BIN AFTER_BIN postgres://postgres@127.0.0.1:5432/lokiz_bench_xxx [ROUNDS]
#
# Each round serves the database with each binary in turn (anonymous rate limit
# raised, as the bench does), warms up 3 s, then runs wrk (2 threads, 8
# connections, 10 s) over scripts/cold-search.lua. Drop the database afterwards.
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,12p "$0"; exit 2; }
before=$1 after=$2 db=$3 rounds=${4:-3}
lua="$(cd "$(dirname "$0")" && pwd)/cold-search.lua"
bind=127.0.0.1:18080
serve() {
  DATABASE_URL=$db LOKIZ_BIND=$bind LOKIZ_STREAM=SEARCHAB RUST_LOG=warn \
    LOKIZ_RATE_LIMIT_ANONYMOUS=10000000/1h "$1" serve >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://$bind/health" >/dev/null && return; sleep 0.1; done
  echo "serve did not come up" >&2; exit 1
}
for r in $(seq "$rounds"); do
  for side in before after; do
    bin=$before; [ "$side" = after ] && bin=$after
    serve "$bin"
    wrk -t2 -c8 -d3s -s "$lua" "http://$bind" >/dev/null
    printf 'round %s %-6s ' "$r" "$side"
    wrk -t2 -c8 -d10s --latency -s "$lua" "http://$bind" |
      awk '/Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Non-2xx/ {bad=$NF}
           END {printf "%s req/s, p50 %s, p99 %s%s\n", rps, p50, p99, bad ? ", non-2xx " bad : ""}'
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done

#!/usr/bin/env bash
# Interleaved A/B of a projection catch-up between two `lokiz` binaries on
# the same seeded store (docs/BENCHMARKS.md). By hand, not in CI:
#
#   scripts/catchup-ab.sh BEFORE_BIN AFTER_BIN [ROUNDS] [VIDEOS]
#
# Seeds a template database once (`lokiz-bench seed`, the bench's mix for VIDEOS
# videos, default 300000: events only, no read models), then per round and
# side copies it, runs `lokiz all` on the copy with a stream of its own (and
# the bench's pool of 32 connections), and
# waits until the relay has published the newest event and no checkpoint has
# moved for 3 s. Prints the wall time to the last checkpoint move and the
# machine's busy CPU-seconds over it. Needs Postgres and NATS as for the
# tests, and `lokiz-bench` (`$LOKIZ_BENCH`, default target/release/lokiz-bench:
# `cargo build --release --bin lokiz-bench`); drops what it made (the
# template too) when it ends.
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,16p "$0"; exit 2; }
before=$1 after=$2 rounds=${3:-2} videos=${4:-300000}
seeder=${LOKIZ_BENCH:-$(cd "$(dirname "$0")/.." && pwd)/target/release/lokiz-bench}
[ -x "$seeder" ] || { echo "$seeder is missing: cargo build --release --bin lokiz-bench" >&2; exit 2; }
export PGOPTIONS="-c client_min_messages=warning"
pg="psql -qAtX -U postgres -h 127.0.0.1"
tpl=lokiz_catchup_tpl run=lokiz_catchup_run
url=postgres://postgres@127.0.0.1:5432
nats_delete() { # a stream, through the NATS protocol (no nats CLI needed)
  python3 - "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", 4222)); s.recv(4096)
s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.ab 1\r\nPUB $JS.API.STREAM.DELETE.' + sys.argv[1].encode() + b' _INBOX.ab 0\r\n\r\nPING\r\n')
s.recv(4096); s.close()
PY
}
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  $pg -c "DROP DATABASE IF EXISTS $run" -c "DROP DATABASE IF EXISTS $tpl" >/dev/null || true
}
trap cleanup EXIT
$pg -c "DROP DATABASE IF EXISTS $tpl" -c "CREATE DATABASE $tpl" >/dev/null
# the older binary makes the template: each side then applies its own newer
# migrations to its copy (so BEFORE must be the older one)
DATABASE_URL=$url/$tpl "$before" migrate >/dev/null
u=$((videos / 100)); [ "$u" -lt 100 ] && u=100
DATABASE_URL=$url/$tpl "$seeder" seed --no-migrate --quiet --users "$u" --videos "$videos" --likes $((videos / 10)) \
  --follows $((videos / 20)) --comments $((videos / 20)) --views $((videos / 10))
$pg $tpl -c "VACUUM ANALYZE" >/dev/null
busy() { awk '/^cpu / {print $2+$3+$4+$7+$8}' /proc/stat; }
for r in $(seq "$rounds"); do
  for side in before after; do
    bin=$before; [ "$side" = after ] && bin=$after
    $pg -c "DROP DATABASE IF EXISTS $run" -c "CREATE DATABASE $run TEMPLATE $tpl" >/dev/null
    # a binary migrates what it knows; the other side's newer migrations stay
    DATABASE_URL=$url/$run "$bin" migrate >/dev/null 2>&1 || true
    stream=CATCHUPAB$r$side
    t0=$(date +%s.%N); c0=$(busy)
    DATABASE_URL=$url/$run LOKIZ_STREAM=$stream LOKIZ_BIND=127.0.0.1:0 RUST_LOG=warn LOKIZ_DB_POOL_SIZE=32 \
      "$bin" all >/dev/null 2>&1 &
    pid=$!
    last="" moved=$t0 cmoved=$c0
    while :; do
      sleep 0.25
      now=$(date +%s.%N); c=$(busy)
      state=$($pg $run -c "SELECT coalesce(string_agg(last_position::text, ',' ORDER BY projection), '')
                             FROM projection_checkpoints")
      relayed=$($pg $run -c "SELECT EXISTS (SELECT 1 FROM relay_checkpoints r
                                WHERE (r.last_xid, r.last_position) >= (SELECT xid::text::bigint, position
                                  FROM events ORDER BY xid DESC, position DESC LIMIT 1))")
      if [ "$state" != "$last" ]; then last=$state moved=$now cmoved=$c; fi
      if [ "$relayed" = t ] && awk "BEGIN {exit !($now - $moved > 3)}"; then break; fi
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    nats_delete "$stream"
    awk -v s="$side" -v r="$r" -v w="$(awk "BEGIN {print $moved - $t0}")" -v c="$(( (cmoved - c0) ))" \
      -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "round %s %-6s %.1f s, %.0f busy CPU-s\n", r, s, w, c / hz}'
  done
done

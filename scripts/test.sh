#!/usr/bin/env bash
# The test command (README.md, .ci/run): starts PostgreSQL and NATS when needed,
# then runs every test of the workspace. Black-box tests create their own
# database and JetStream stream each and remove them when they pass.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh || exit 1
# schemathesis and Chromium for the contract tests
. scripts/contract-tools.sh || exit 1
log="$(mktemp)"
# the fault tests run `lokiz` as separate processes (tests/src/cluster.rs)
cargo build --locked --bin lokiz || exit 1
rm -f target/test-artifacts/schemathesis-summary.txt target/test-artifacts/docs-requests.txt
cargo test --workspace --locked -- --test-threads "${LOKIZ_TEST_THREADS:-4}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# one closing line for the whole workspace
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "workspace: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
# what the contract tests saw (tests/tests/blackbox/contract.rs)
for f in target/test-artifacts/schemathesis-summary.txt target/test-artifacts/docs-requests.txt; do
  if [ -f "$f" ]; then echo "== $f"; cat "$f"; fi
done
exit "$status"

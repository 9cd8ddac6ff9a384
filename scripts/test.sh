#!/usr/bin/env bash
# The test command (README.md, .ci/run): starts PostgreSQL and NATS when needed,
# then runs every test of the workspace. Black-box tests create their own
# database and JetStream stream each and remove them when they pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
exec cargo test --workspace --locked -- --test-threads "${LOKIZ_TEST_THREADS:-4}"

#!/usr/bin/env bash
# Runs LOKIZ locally: starts PostgreSQL and NATS when needed, then `lokiz all`
# (API + relay + projections). Configuration: see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
exec cargo run --release --bin lokiz -- all

#!/usr/bin/env bash
# On-demand soak test (not run by CI): eb in front of 3 mock ELs for DURATION seconds (default
# one hour) at one slot per 100 ms (newPayload + forkchoiceUpdated, a build and getPayload every
# 4th slot), with one EL stopping and restarting every 3 s. Prints RSS at start and end, failed
# answers (no answer, or SYNCING where the two steady ELs say VALID) and deadline misses.
# Usage: scripts/soak.sh [DURATION_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-3600}"
cargo build --quiet --release -p eb -p eb-tests --bin eb --bin eb-bench
exec target/release/eb-bench --els 3 --payload-kib 128 --mode slots --slot-ms 100 \
  --requests 1000000000 --duration-s "$duration" --flap-ms 3000 --no-direct

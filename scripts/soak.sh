#!/usr/bin/env bash
# The long soak: random faults (kill -9 of a worker, a broker or Redis, each restarted; a worker
# frozen past its lease; Redis frozen past the brokers' timeout) while faults.record tasks flow
# through two brokers and four workers; then the checker's verdict (lost / redelivered /
# unexpected). Usage: scripts/soak.sh [SECONDS=600] [TASKS=1000000] [FAULT_EVERY_MS=5000]
# Builds an optimised tree in build/soak (no sanitizers: this measures throughput under
# faults); the ASan run of the same scenarios is tests/faults (ctest -L faults).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-600}
TASKS=${2:-1000000}
EVERY=${3:-5000}
BUILD=build/soak
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target celeriac-soak >/dev/null
"$BUILD/tests/faults/celeriac-soak" "$SECS" "$TASKS" "$EVERY"

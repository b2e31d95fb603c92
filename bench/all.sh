#!/usr/bin/env bash
# The whole benchmark in one command: installs what it needs (deps, the peers: beanstalkd,
# Celery, RQ, BullMQ), builds celeriac (release, build/demo), runs celeriac and every peer
# through the same phases REPS times (bench/peers/run_all.sh: medians and spread), then
# celeriac's own scenarios (bench/scenarios.sh: queue depth, idle connections, payload size),
# and writes everything as markdown to bench/results/DATE.md (printed as it goes).
# Usage: bench/all.sh [N] [REPS]   (defaults 20000, 3; about 25 minutes with the defaults)
# Env: PIN=1 pins servers to CPU 0 and clients to CPU 1; see bench/peers/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}; REPS=${2:-3}
scripts/deps.sh
bench/peers/install.sh
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build/demo -j"$(nproc)" > /dev/null
mkdir -p bench/results
OUT=bench/results/$(date +%Y%m%d-%H%M%S).md
{
  bench/peers/run_all.sh "$N" "$REPS"
  echo
  echo "### celeriac scenarios"
  echo
  bench/scenarios.sh
} | tee "$OUT"
echo "written: $OUT"

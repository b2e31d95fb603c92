#!/usr/bin/env bash
# Runs celeriac-bench against a fresh stack on this machine: redis-server (AOF everysec), one
# celeriacd, WORKERS celeriac-workers (prefork, 1 child each, prefetch 64), for each mode, and
# reports tasks/s plus CPU µs per task of every process (from /proc) and Redis commands per task
# (INFO commandstats). Usage: bench/run.sh [N] [WORKERS] (defaults 20000, 2).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}; W=${2:-2}
. bench/lib.sh
bench_stack everysec
PIDS=("${BENCH_PIDS[@]}")
for i in $(seq "$W"); do
  "$BUILD/worker/celeriac-worker" --broker "127.0.0.1:$BP" --queues bench --concurrency 1 --prefetch 64 --log-level warn --log-file "$RUN/w$i.log" &
  PIDS+=($!)
  BENCH_PIDS+=($!)
done
sleep 0.5
ticks() { local t=0; for p in "$@"; do for q in $p $(pgrep -P "$p" || true); do
  t=$((t + $(awk '{print $14 + $15}' "/proc/$q/stat"))); done; done; echo $t; }
calls() { redis-cli -p "$RP" info commandstats | awk -F'[=,]' '/calls=/{s+=$2} END{print s}'; }
HZ=$(getconf CLK_TCK)
"$BUILD/bench/celeriac-bench" "127.0.0.1:$BP" 2000 pipelined > /dev/null # warm-up
for mode in sync pipelined; do
  b0=$(ticks "$B"); r0=$(ticks "$R"); w0=$(ticks "${PIDS[@]:2}"); c0=$(calls)
  line=$("$BUILD/bench/celeriac-bench" "127.0.0.1:$BP" "$N" "$mode" 256)
  b1=$(ticks "$B"); r1=$(ticks "$R"); w1=$(ticks "${PIDS[@]:2}"); c1=$(calls)
  us() { echo "scale=1; ($2 - $1) * 1000000 / $HZ / $N" | bc; }
  echo "$line cpu_us_per_task: broker=$(us "$b0" "$b1") redis=$(us "$r0" "$r1") workers=$(us "$w0" "$w1") redis_cmds_per_task=$(echo "scale=2; ($c1 - $c0) / $N" | bc)"
done
echo "broker RSS: $(awk '/VmRSS/{print $2}' /proc/$B/status) KiB"

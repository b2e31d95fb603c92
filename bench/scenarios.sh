#!/usr/bin/env bash
# celeriac-only scenarios of the benchmark (bench/all.sh runs them after the peers' matrix):
#   depth    drain rate of 20,000 tasks with 1,000 vs 1,000,000 more queued behind them
#            (2 workers; the cost per task must not grow with the queue)
#   idle     broker RSS per idle connection (10,000 producers that said hello, then nothing)
#   payload  e2e with 100-byte vs 64 KiB args (bench/peers/run.sh celeriac w2, PAYLOAD=...)
# Prints one markdown table. Usage: bench/scenarios.sh [DEEP] (default 1000000). Release build
# in build/demo (made by bench/lib.sh); every process runs on a free loopback port and is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
DEEP=${1:-1000000}
. bench/lib.sh
ANALYZE=(/usr/bin/python3 bench/peers/analyze.py)
PRODUCER=$BUILD/bench/celeriac-bench-producer
bench_stack everysec
kill "$B"; wait "$B" 2>/dev/null || true # restarted below with the flags each scenario needs
ulimit -n "$(ulimit -Hn)"

start_broker() {
  "$BUILD/server/celeriacd" --port "$BP" --redis-port "$RP" --prefix "$1" --log-level warn \
    --max-connections 12000 --log-file "$RUN/b-$1.log" &
  B=$!; BENCH_PIDS+=("$B")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$BP") 2>/dev/null && break; sleep 0.05; done
}
stop_pids() { kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }

# depth D: enqueue 20,000 + D tasks with no worker, then time the first 20,000 starts.
depth() {
  local d=$1 rec=$RUN/rec-$1 ws=()
  mkdir -p "$rec"
  start_broker "depth$d"
  "$PRODUCER" "127.0.0.1:$BP" bench 0 $((20000 + d)) 0 256 > /dev/null
  for i in 1 2; do
    BENCH_REC_DIR=$rec "$BUILD/worker/celeriac-worker" --broker "127.0.0.1:$BP" --queues bench \
      --concurrency 1 --prefetch 64 --log-level warn --plugin "$BUILD/bench/libbenchrecord.so" \
      --log-file "$RUN/w-$d-$i.log" & ws+=($!)
  done
  "${ANALYZE[@]}" wait "$rec" 0 20000 300
  local rate
  rate=$("${ANALYZE[@]}" phase "$rec" 0 20000 | awk -F= '$1 == "drain_per_s" {print $2}')
  stop_pids "${ws[@]}" "$B"
  redis-cli -p "$RP" flushall > /dev/null
  echo "$rate"
}

echo "| scenario | result |"
echo "|---|---|"
shallow=$(depth 1000)
deep=$(depth "$DEEP")
printf '| drain rate, 1,000 queued behind | %.0f tasks/s |\n' "$shallow"
printf '| drain rate, %s queued behind | %.0f tasks/s (%.2f× the shallow rate) |\n' "$DEEP" "$deep" \
  "$(echo "$deep / $shallow" | bc -l)"

start_broker idle
idle=$(/usr/bin/python3 bench/idle_conns.py "$BP" 10000 "$B")
stop_pids "$B"
echo "| 10,000 idle connections | $(echo "$idle" | tr ' ' '\n' | grep -E 'rss|per_conn|welcomed' | paste -sd' ') |"

for p in 100 65536; do
  row=$(PAYLOAD=$p CELERIAC_BUILD=$PWD/$BUILD bench/peers/run.sh celeriac w2 5000)
  echo "| payload $p B, 5,000 tasks, sync producer, 2 workers | $(echo "$row" | awk -F'|' '{printf "enqueue %s/s, e2e %s/s, p50 %s ms, p99 %s ms, %s µs CPU/task", $5, $6, $7, $8, $10}' | tr -s ' ') |"
done

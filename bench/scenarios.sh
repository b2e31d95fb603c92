#!/usr/bin/env bash
# celeriac-only scenarios of the benchmark (bench/all.sh runs them after the peers' matrix):
#   depth    drain rate of DRAIN (default 100,000) tasks with 1,000 vs 1,000,000 more queued
#            behind them (2 workers; the cost per task must not grow with the queue); shallow and
#            deep alternate DEPTH_REPS times (default 3) and the medians are compared, because a
#            single window of a few seconds swings with the host's noise; each drain starts from
#            a rewritten AOF with automatic rewrites off (aof_compact)
#   idle     broker RSS per idle connection (10,000 producers that said hello, then nothing);
#            and the pipelined e2e rate of DRAIN tasks with those 10,000 held open beside it,
#            or with 10,000 waits for results pending, against none (the cost per task must not
#            grow with connections or waits either)
#   payload  e2e with 100-byte vs 64 KiB args (bench/peers/run.sh celeriac w2, PAYLOAD=...)
# Prints one markdown table. Usage: bench/scenarios.sh [DEEP] (default 1000000). Release build
# in build/demo (made by bench/lib.sh); every process runs on a free loopback port and is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
DEEP=${1:-1000000}
DRAIN=${DRAIN:-100000}
DEPTH_REPS=${DEPTH_REPS:-3}
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
  bench_wait_broker "$BP" # listening is not enough: the broker must have reached its Redis
}
stop_pids() { kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }

# A fresh redis-server (AOF everysec, empty dir) on port $RP for one depth run: a run's 1M tasks
# leave hundreds of MB of AOF behind, which would slow every later run on the same server.
fresh_redis() {
  stop_pids "$R"
  rm -rf "$RUN/redis"; mkdir -p "$RUN/redis"
  redis-server --port "$RP" --bind 127.0.0.1 --dir "$RUN/redis" --appendonly yes \
    --appendfsync everysec --save '' --logfile "$RUN/redis/r.log" > /dev/null 2>&1 &
  R=$!; BENCH_PIDS+=("$R")
  for _ in $(seq 100); do redis-cli -p "$RP" ping > /dev/null 2>&1 && break; sleep 0.05; done
}

# Rewrites the AOF now, waits for it, and turns Redis's automatic rewrites off for the drain:
# otherwise the fill decides where they fall (a shallow fill's first one, at the 64 MB minimum,
# landed inside its drain; a deep fill had all of its own before), and the drains compared
# when Redis rewrites, not how the cost per task moves with depth.
aof_compact() {
  local before
  before=$(redis-cli -p "$RP" info persistence | awk -F: '$1 == "aof_rewrites" {print $2+0}')
  redis-cli -p "$RP" bgrewriteaof > /dev/null
  for _ in $(seq 1200); do
    redis-cli -p "$RP" info persistence | awk -F: -v b="$before" '
      $1 == "aof_rewrites" {n = $2 + 0} $1 ~ /^aof_rewrite_(in_progress|scheduled)$/ {busy += $2}
      END {exit !(n > b && busy == 0)}' &&
      redis-cli -p "$RP" config set auto-aof-rewrite-percentage 0 > /dev/null && return 0
    sleep 0.1
  done
  echo "AOF rewrite did not finish in 120 s" >&2; return 1
}

# depth D: enqueue DRAIN + D tasks with no worker, then time the first DRAIN starts; sets
# DEPTH_RATE (not echoed: a command substitution would run it in a subshell, whose redis-server
# the caller could not stop).
depth() {
  local d=$1 rec=$RUN/rec-$1-$RANDOM ws=()
  mkdir -p "$rec"
  fresh_redis
  start_broker "depth$d"
  "$PRODUCER" "127.0.0.1:$BP" bench 0 $((DRAIN + d)) 0 256 > /dev/null
  aof_compact
  for i in 1 2; do
    BENCH_REC_DIR=$rec "$BUILD/worker/celeriac-worker" --broker "127.0.0.1:$BP" --queues bench \
      --concurrency 1 --prefetch 64 --log-level warn --plugin "$BUILD/bench/libbenchrecord.so" \
      --log-file "$RUN/w-$d-$i.log" & ws+=($!)
  done
  "${ANALYZE[@]}" wait "$rec" 0 "$DRAIN" 300
  local rate
  rate=$("${ANALYZE[@]}" phase "$rec" 0 "$DRAIN" | awk -F= '$1 == "drain_per_s" {print $2}')
  stop_pids "${ws[@]}" "$B"
  DEPTH_RATE=$rate
}

# busy N [MODE]: the pipelined e2e rate (256 in flight, 2 solo workers with --prefetch 256) of
# DRAIN tasks with N producer connections held open meanwhile, idle (MODE hold, the default) or
# each waiting for a task of its own that does not run (MODE waits); sets BUSY_RATE.
busy() {
  local n=$1 mode=${2:-hold} rec=$RUN/rec-busy-$1-$RANDOM ws=() hold=()
  mkdir -p "$rec"
  fresh_redis
  start_broker "busy$n"
  if [ "$n" -gt 0 ]; then
    /usr/bin/python3 bench/idle_conns.py "$BP" "$n" "$B" "$mode" > "$RUN/hold-$n.out" &
    hold=($!); BENCH_PIDS+=("${hold[@]}")
    for _ in $(seq 1200); do grep -q idle_connections "$RUN/hold-$n.out" && break; sleep 0.1; done
  fi
  for i in 1 2; do
    BENCH_REC_DIR=$rec "$BUILD/worker/celeriac-worker" --broker "127.0.0.1:$BP" --queues bench \
      --pool solo --prefetch 256 --log-level warn --plugin "$BUILD/bench/libbenchrecord.so" \
      --log-file "$RUN/wb-$n-$i.log" & ws+=($!)
  done
  sleep 0.5
  "$PRODUCER" "127.0.0.1:$BP" bench 0 "$DRAIN" 0 256 > /dev/null
  "${ANALYZE[@]}" wait "$rec" 0 "$DRAIN" 300
  BUSY_RATE=$("${ANALYZE[@]}" phase "$rec" 0 "$DRAIN" | awk -F= '$1 == "e2e_per_s" {print $2}')
  stop_pids "${ws[@]}" "${hold[@]}" "$B"
}

echo "| scenario | result |"
echo "|---|---|"
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
shallows=(); deeps=()
for _ in $(seq "$DEPTH_REPS"); do
  depth 1000; shallows+=("$DEPTH_RATE")
  depth "$DEEP"; deeps+=("$DEPTH_RATE")
done
shallow=$(median "${shallows[@]}"); deep=$(median "${deeps[@]}")
printf '| drain rate of %s, 1,000 queued behind | median %.0f tasks/s (runs: %s) |\n' "$DRAIN" \
  "$shallow" "$(printf '%.0f ' "${shallows[@]}")"
printf '| drain rate of %s, %s queued behind | median %.0f tasks/s (runs: %s): %.2f× the shallow median |\n' \
  "$DRAIN" "$DEEP" "$deep" "$(printf '%.0f ' "${deeps[@]}")" "$(echo "$deep / $shallow" | bc -l)"

start_broker idle
idle=$(/usr/bin/python3 bench/idle_conns.py "$BP" 10000 "$B")
stop_pids "$B"
echo "| 10,000 idle connections | $(echo "$idle" | tr ' ' '\n' | grep -E 'rss|per_conn|welcomed' | paste -sd' ') |"
nones=(); manys=(); waits=()
for _ in $(seq "$DEPTH_REPS"); do
  busy 0; nones+=("$BUSY_RATE")
  busy 10000; manys+=("$BUSY_RATE")
  busy 10000 waits; waits+=("$BUSY_RATE")
done
none=$(median "${nones[@]}"); many=$(median "${manys[@]}"); waiting=$(median "${waits[@]}")
printf '| pipelined e2e of %s tasks, no other connections | median %.0f tasks/s (runs: %s) |\n' \
  "$DRAIN" "$none" "$(printf '%.0f ' "${nones[@]}")"
printf '| pipelined e2e of %s tasks, 10,000 idle connections open | median %.0f tasks/s (runs: %s): %.2f× the rate with none |\n' \
  "$DRAIN" "$many" "$(printf '%.0f ' "${manys[@]}")" "$(echo "$many / $none" | bc -l)"
printf '| pipelined e2e of %s tasks, 10,000 waits for results pending | median %.0f tasks/s (runs: %s): %.2f× the rate with none |\n' \
  "$DRAIN" "$waiting" "$(printf '%.0f ' "${waits[@]}")" "$(echo "$waiting / $none" | bc -l)"

for p in 100 65536; do
  row=$(PAYLOAD=$p CELERIAC_BUILD=$PWD/$BUILD bench/peers/run.sh celeriac w2 5000)
  echo "| payload $p B, 5,000 tasks, sync producer, 2 workers | $(echo "$row" | awk -F'|' '{printf "enqueue %s/s, e2e %s/s, p50 %s ms, p99 %s ms, %s µs CPU/task", $5, $6, $7, $8, $10}' | tr -s ' ') |"
done

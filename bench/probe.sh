#!/usr/bin/env bash
# bench/probe.sh N WINDOW [PERF] — one quick A/B probe of the whole stack: redis-server (AOF
# everysec) + celeriacd + $WORKERS workers running bench.record + celeriac-bench-producer
# enqueueing N tasks (WINDOW 0: one at a time, the sync API; WINDOW > 0: that many in flight).
# Prints the time to enqueue and to start all N, CPU µs per task of the broker, Redis, the
# workers (from /proc) and the producer, and Redis commands per task. PERF (optional):
# broker|redis|workers records a call-graph profile of that process over the run (perf.data in the run dir, which is
# kept and printed), sys counts the broker's system calls and context switches per task.
# Env: BUILD (default build/demo, release, built by bench/run.sh), WORKERS (2), POOL (prefork),
# PREFETCH (64), BFLAGS / WFLAGS (extra broker / worker flags), RATE (tasks/s; > 0 paces the
# producer and adds enqueue→start latency percentiles, e.g. RATE=500 bench/probe.sh 1000 0).
# Run A/B builds interleaved: the machines this runs on are noisy. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PROBE_BUILD=${BUILD:-build/demo}
source bench/lib.sh # (sets BUILD to its own default)
BUILD=$PROBE_BUILD
N=${1:?N}; W=${2:?WINDOW}; PERF=${3:-none}
[ -x "$BUILD/bench/celeriac-bench-producer" ] || { echo "build first: bench/run.sh, or cmake --build $BUILD" >&2; exit 1; }
# On tmpfs, as the probe figures in docs/benchmarks.md were taken (the peer runs keep the AOF on
# disk): a probe compares builds, not storage.
RUN=$(mktemp -d --tmpdir=/dev/shm)
RP=$(bench_port); BP=$(bench_port)
PIDS=()
KEEP=0
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; [ "$KEEP" = 1 ] || rm -rf "$RUN"' EXIT
[ "$PERF" != none ] && KEEP=1
redis-server --port "$RP" --bind 127.0.0.1 --dir "$RUN" --save '' --appendonly yes \
  --appendfsync everysec --logfile "$RUN/redis.log" & R=$!; PIDS+=("$R")
sleep 0.3
# shellcheck disable=SC2086
"$BUILD/server/celeriacd" --port "$BP" --redis-port "$RP" --log-level warn ${BFLAGS:-} \
  > "$RUN/broker.log" 2>&1 & B=$!; PIDS+=("$B")
bench_wait_broker "$BP"
WP=()
for i in $(seq "${WORKERS:-2}"); do
  # shellcheck disable=SC2086
  BENCH_REC_DIR=$RUN "$BUILD/worker/celeriac-worker" --broker "127.0.0.1:$BP" --queues bench \
    --pool "${POOL:-prefork}" --concurrency 1 --prefetch "${PREFETCH:-64}" --log-level warn \
    --plugin "$BUILD/bench/libbenchrecord.so" ${WFLAGS:-} > "$RUN/worker$i.log" 2>&1 & WP+=($!)
done
PIDS+=("${WP[@]}")
sleep 0.5

if [ "${RATE:-0}" -gt 0 ]; then
  # Latency is measured warm: connections made, pool children started, scripts loaded.
  "$BUILD/bench/celeriac-bench-producer" "127.0.0.1:$BP" bench "$N" 200 0 > /dev/null
  for _ in $(seq 200); do [ "$(cat "$RUN"/rec.* 2> /dev/null | wc -l)" -ge 200 ] && break; sleep 0.025; done
  for f in "$RUN"/rec.*; do : > "$f"; done # the workers keep them open (O_APPEND)
fi

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
worker_ticks() { # the workers and their pool children
  local t=0 p
  for p in "${WP[@]}" $(for q in "${WP[@]}"; do pgrep -P "$q" || true; done); do t=$((t + $(ticks "$p"))); done
  echo "$t"
}
b0=$(ticks "$B"); r0=$(ticks "$R"); w0=$(worker_ticks)
redis-cli -p "$RP" config resetstat > /dev/null
PP=
case $PERF in
  broker) perf record -q -g -o "$RUN/perf.data" -p "$B" 2> /dev/null & PP=$! ;;
  redis) perf record -q -g -o "$RUN/perf.data" -p "$R" 2> /dev/null & PP=$! ;;
  workers) perf record -q -g -o "$RUN/perf.data" -p "$(echo "${WP[@]}" | tr ' ' ,)" 2> /dev/null & PP=$! ;;
  sys) perf stat -e raw_syscalls:sys_enter,context-switches -o "$RUN/perf.txt" -p "$B" 2> /dev/null & PP=$! ;;
  none) ;;
  *) echo "PERF: broker|redis|workers|sys|none" >&2; exit 2 ;;
esac
# The producer's CPU: what this shell's reaped children used, before and after it ran.
# (times runs in this shell: in a command substitution it would see the subshell's children.)
child_cpu_us() { tail -1 "$1" | tr ms '  ' | awk '{print int(($1 * 60 + $2 + $3 * 60 + $4) * 1e6)}'; }
times > "$RUN/times0"
t0=$(date +%s%N)
BENCH_WINDOW=$W "$BUILD/bench/celeriac-bench-producer" "127.0.0.1:$BP" bench 0 "$N" "${RATE:-0}" \
  > "$RUN/producer.out"
t1=$(date +%s%N)
times > "$RUN/times1"
p0=$(child_cpu_us "$RUN/times0"); p1=$(child_cpu_us "$RUN/times1")
started=0
for _ in $(seq 400); do
  started=$(cat "$RUN"/rec.* 2> /dev/null | wc -l)
  [ "$started" -ge "$N" ] && break
  sleep 0.025
done
t2=$(date +%s%N)
[ -n "$PP" ] && { kill -INT "$PP"; wait "$PP" 2> /dev/null || true; }
b1=$(ticks "$B"); r1=$(ticks "$R"); w1=$(worker_ticks)
HZ=$(getconf CLK_TCK)
us() { echo $(( ($1) * 1000000 / HZ / N )); }
echo "N=$N window=$W pool=${POOL:-prefork} prefetch=${PREFETCH:-64} broker flags: ${BFLAGS:-none}"
echo "enqueued in $(( (t1 - t0) / 1000000 )) ms, all $started started in $(( (t2 - t0) / 1000000 )) ms"
echo "CPU us/task: broker $(us $((b1 - b0))) redis $(us $((r1 - r0))) workers $(us $((w1 - w0)))" \
  "producer $(( (p1 - p0) / N ))"
if [ "${RATE:-0}" -gt 0 ]; then # records: seq enq_ns start_ns
  cat "$RUN"/rec.* | awk '{print ($3 - $2) / 1000}' | sort -n |
    awk '{a[NR] = $1}
      END {if (!NR) exit; m = int((NR + 1) / 2); k = int(NR * 0.99); if (k < 1) k = 1
           printf "enqueue->start at %s/s: p50 %d us, p99 %d us, max %d us\n", rate, a[m], a[k], a[NR]}' \
      rate="$RATE"
fi
redis-cli -p "$RP" info commandstats | grep calls | sed 's/cmdstat_//' |
  awk -F'[:=,]' -v n="$N" '{printf "  %-16s %6.2f calls/task %8s us/call\n", $1, $3 / n, $7}' |
  sort -k2 -rn | head -12
[ "$PERF" = sys ] && grep -E "sys_enter|context" "$RUN/perf.txt" | tr -d , |
  awk -v n="$N" '{printf "  broker %s per task: %.2f\n", $2, $1 / n}'
[ "$KEEP" = 1 ] && echo "run dir (kept): $RUN"
exit 0

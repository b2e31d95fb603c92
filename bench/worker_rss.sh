#!/usr/bin/env bash
# Measures celeriac-worker memory over many no-op tasks: the RSS of the worker parent and of each
# pool child when idle, after a warm-up of 10,000 tasks and after all of them, plus the parent's
# peak. A worker that leaks or grows per task shows it here. Usage:
#   bench/worker_rss.sh [TASKS]      (default 100000; POOL=threads for the thread pool)
# Release build in $BUILD (default build/demo, see bench/lib.sh; set BUILD to use another dir);
# starts its own redis-server and celeriacd on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
WARMUP=10000
OWN_BUILD=${BUILD:-}
. bench/lib.sh
BUILD=${OWN_BUILD:-$BUILD}
bench_stack everysec
"$BUILD/worker/celeriac-worker" --broker "127.0.0.1:$BP" --queues bench --pool "${POOL:-prefork}" \
  --concurrency 2 --prefetch 32 --log-level warn --log-file "$RUN/w.log" & W=$!
BENCH_PIDS+=("$W")
sleep 0.5

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
rss() {
  local total parent kids=""
  parent=$(kib "$W" VmRSS); total=$parent
  for p in $(pgrep -P "$W" || true); do
    kids="$kids $(kib "$p" VmRSS)"; total=$((total + $(kib "$p" VmRSS)))
  done
  printf '%-22s parent %6s KiB (peak %s)  children:%s KiB  total %s KiB\n' \
    "$1" "$parent" "$(kib "$W" VmHWM)" "${kids:- none}" "$total"
}
depth() {
  printf 'QUEUES\r\n' | nc -q 1 127.0.0.1 "$BP" | grep -o '"bench":{"ready":[0-9]*,"active":[0-9]*' |
    grep -o '[0-9]*' | paste -sd+ | bc
}
enqueue() { for _ in $(seq "$1"); do echo "ENQUEUE bench celeriac.noop"; done | nc -q 5 127.0.0.1 "$BP" > /dev/null; }
drain() { while [ "$(depth)" != "0" ]; do sleep 0.5; done; }

echo "celeriac-worker RSS, ${POOL:-prefork} pool, concurrency 2, prefetch 32, $N no-op tasks"
rss "idle:"
enqueue "$WARMUP"; drain
rss "after $WARMUP tasks:"
start=$(date +%s.%N)
enqueue $((N - WARMUP)); drain
end=$(date +%s.%N)
rss "after $N tasks:"
echo "last $((N - WARMUP)) tasks in $(echo "$end - $start" | bc) s (enqueue over telnet included)"

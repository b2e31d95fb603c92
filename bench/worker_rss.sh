#!/usr/bin/env bash
# Measures celeriac-worker memory over many no-op tasks: RSS of the worker parent and its pool
# children after warm-up and at the end. Usage: bench/worker_rss.sh [TASKS] (default 100000).
# Builds in build/demo (release) and starts its own redis-server and celeriacd on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
. bench/lib.sh
bench_stack everysec
"$BUILD/worker/celeriac-worker" --broker "127.0.0.1:$BP" --queues bench --concurrency 2 --prefetch 32 --log-file "$RUN/w.log" & W=$!
BENCH_PIDS+=("$W")
rss() { local total=0; for p in $W $(pgrep -P $W); do total=$((total + $(awk '/VmRSS/{print $2}' /proc/$p/status))); done; echo $total; }
depth() { printf 'QUEUES\r\n' | nc -q 1 127.0.0.1 "$BP" | grep -o '"bench":{"ready":[0-9]*,"active":[0-9]*' | grep -o '[0-9]*' | paste -sd+ | bc; }
enqueue() { for _ in $(seq "$1"); do echo "ENQUEUE bench celeriac.noop"; done | nc -q 5 127.0.0.1 "$BP" > /dev/null; }
drain() { while [ "$(depth)" != "0" ]; do sleep 0.5; done; }
enqueue 10000; drain
echo "after 10000 tasks: worker RSS $(rss) KiB (parent + children)"
start=$(date +%s.%N)
enqueue $((N - 10000)); drain
end=$(date +%s.%N)
echo "after $N tasks: worker RSS $(rss) KiB (parent + children); last $((N - 10000)) in $(echo "$end - $start" | bc) s"

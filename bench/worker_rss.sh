#!/usr/bin/env bash
# Measures celeriac-worker memory over many no-op tasks: RSS of the worker parent and its pool
# children after warm-up and at the end. Usage: bench/worker_rss.sh [TASKS] (default 100000).
# Builds in build/demo (release) and starts its own redis-server and celeriacd on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
BUILD=build/demo
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
RUN=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(port); BP=$(port)
redis-server --port "$RP" --bind 127.0.0.1 --dir "$RUN" --appendonly yes --save '' --logfile "$RUN/r.log" & R=$!
sleep 0.3
"$BUILD/server/celeriacd" --port "$BP" --redis-port "$RP" --log-file "$RUN/b.log" & B=$!
sleep 0.3
"$BUILD/worker/celeriac-worker" --broker "127.0.0.1:$BP" --queues bench --concurrency 2 --prefetch 32 --log-file "$RUN/w.log" & W=$!
trap 'kill $W $B $R 2>/dev/null; wait 2>/dev/null; rm -rf "$RUN"' EXIT
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

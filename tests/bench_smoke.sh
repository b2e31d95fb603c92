#!/usr/bin/env bash
# The benchmark tools with a tiny N: a real redis-server, celeriacd and two celeriac-workers
# running bench.record; celeriac-bench-producer sync, pipelined and paced; the peers' analysis
# must find every task started exactly once. Then bench/probe.sh on a stack of its own.
# usage: bench_smoke.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
run=$(mktemp -d "${TMPDIR:-/tmp}/celeriac-bench-smoke-XXXXXX")
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
rp=$(port); bp=$(port)
redis-server --port "$rp" --bind 127.0.0.1 --dir "$run" --save '' --appendonly yes \
  --logfile "$run/r.log" & pids+=($!)
up "$rp"
"$build/server/celeriacd" --port "$bp" --redis-port "$rp" --log-file "$run/b.log" & pids+=($!)
up "$bp"
mkdir "$run/rec"
for i in 1 2; do
  BENCH_REC_DIR=$run/rec "$build/worker/celeriac-worker" --broker "127.0.0.1:$bp" --queues bench \
    --plugin "$build/bench/libbenchrecord.so" --log-file "$run/w$i.log" & pids+=($!)
done
producer=("$build/bench/celeriac-bench-producer" "127.0.0.1:$bp" bench)
"${producer[@]}" 0 200 0 | grep -q '^ENQ 200 '
"${producer[@]}" 200 200 0 32 | grep -q '^ENQ 200 '
"${producer[@]}" 400 50 500 | grep -q '^ENQ 50 '
analyze=("$(command -v python3)" "$src/bench/peers/analyze.py")
"${analyze[@]}" wait "$run/rec" 0 450 60
out=$("${analyze[@]}" phase "$run/rec" 0 450)
echo "$out"
grep -qx 'lost=0' <<< "$out"
grep -qx 'duplicates=0' <<< "$out"
grep -q '^lat_p99_ms=' <<< "$out"
probe=$(BUILD=$build "$src/bench/probe.sh" 100 0)
grep -q '^enqueued in .* all 100 started' <<< "$probe"
echo "bench smoke: 450 tasks, each started once; probe.sh ran 100"

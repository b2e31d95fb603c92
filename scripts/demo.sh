#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, start a local redis-server
# (own port and temp dir, AOF on) unless CELERIAC_REDIS=host:port is given, start celeriacd
# and two celeriac-workers, enqueue a few hundred tasks, show results and a stats summary, and
# stop everything it started. `scripts/demo.sh --keep` leaves the stack running.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
COUNT=${CELERIAC_DEMO_TASKS:-300}

scripts/deps.sh
BUILD=build/demo
echo "== building (release) in $BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || echo $((20000 + RANDOM % 20000)); }
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

RUN=$(mktemp -d)
PIDS=()
cleanup() {
  [ "$KEEP" = 1 ] && return
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap cleanup EXIT

if [ -n "${CELERIAC_REDIS:-}" ]; then
  REDIS_HOST=${CELERIAC_REDIS%:*}; REDIS_PORT=${CELERIAC_REDIS##*:}
  echo "== using Redis at $REDIS_HOST:$REDIS_PORT"
else
  REDIS_HOST=127.0.0.1; REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN" --appendonly yes \
    --appendfsync everysec --save '' --maxmemory-policy noeviction --logfile "$RUN/redis.log" &
  PIDS+=($!)
  wait_port "$REDIS_PORT"
  echo "== redis-server on 127.0.0.1:$REDIS_PORT (AOF on, data in $RUN)"
fi

PORT=$(free_port)
"$BUILD/server/celeriacd" --port "$PORT" --redis-host "$REDIS_HOST" --redis-port "$REDIS_PORT" \
  --prefix "demo$$" --log-file "$RUN/broker.log" &
PIDS+=($!)
wait_port "$PORT"
echo "== celeriacd on 127.0.0.1:$PORT"
for i in 1 2; do
  "$BUILD/worker/celeriac-worker" --broker "127.0.0.1:$PORT" --queues demo --concurrency 2 \
    --plugin "$BUILD/examples/libwordcount.so" --name "demo-worker-$i" --log-file "$RUN/worker$i.log" &
  PIDS+=($!)
done
echo "== 2 celeriac-workers (prefork, 2 processes each, word-count plugin loaded)"

echo "== enqueueing $COUNT tasks (word counts of this repo's docs, and echoes)"
"$BUILD/examples/celeriac-demo-producer" "127.0.0.1:$PORT" "$COUNT" README.md docs/*.md

echo "== one task through the CLI"
ID=$("$BUILD/client/celeriac" --broker "127.0.0.1:$PORT" enqueue --queue demo celeriac.echo '{"hello": "celeriac"}')
echo "  celeriac enqueue -> $ID"
echo "  celeriac wait    -> $("$BUILD/client/celeriac" --broker "127.0.0.1:$PORT" wait "$ID" --timeout 10)"

echo "== broker stats (text protocol: printf 'STATS\\n' | nc 127.0.0.1 $PORT)"
"$BUILD/client/celeriac" --broker "127.0.0.1:$PORT" stats | grep -E '"(enqueued|dispatched|acked|failed|connections)"|"demo"' | sed 's/^/  /'
if [ "$KEEP" = 1 ]; then
  echo "== still running (--keep): broker 127.0.0.1:$PORT, Redis $REDIS_HOST:$REDIS_PORT, logs in $RUN"
  echo "   stop with: kill ${PIDS[*]}"
else
  echo "== stopping everything the demo started"
fi

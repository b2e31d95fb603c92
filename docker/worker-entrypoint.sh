#!/bin/bash
# celeriac-worker-entrypoint: starts celeriac-worker configured from the environment, loading
# every task plugin found in the plugin directories. Extra arguments are passed to the worker
# after these, so they win (e.g. `command: ["--prefetch", "4"]` in docker-compose.yml).
#
#   CELERIAC_BROKER              broker address(es), comma-separated    (default broker:7878)
#   CELERIAC_QUEUES              queues to take tasks from              (default default)
#   CELERIAC_WORKER_CONCURRENCY  tasks run at once                       (default 4)
#   CELERIAC_WORKER_POOL         prefork, threads or solo               (default prefork)
#   CELERIAC_DRAIN_TIMEOUT_MS    SIGTERM: wait this long for running tasks (default 30000)
#   CELERIAC_PLUGIN_DIRS         directories whose *.so are all loaded, colon-separated
#                                (default /usr/local/lib/celeriac/plugins:/plugins)
#   CELERIAC_PLUGINS             further plugin files, comma-separated  (default none)
#   CELERIAC_LOG_LEVEL           debug, info, warn or error             (default info)
#
# The worker reconnects to its broker with jittered backoff, so it may start before the broker.
set -euo pipefail
shopt -s nullglob

args=()
IFS=, read -r -a brokers <<< "${CELERIAC_BROKER:-broker:7878}"
for b in "${brokers[@]}"; do [ -n "$b" ] && args+=(--broker "$b"); done
args+=(--queues "${CELERIAC_QUEUES:-default}"
       --concurrency "${CELERIAC_WORKER_CONCURRENCY:-4}"
       --pool "${CELERIAC_WORKER_POOL:-prefork}"
       --drain-timeout-ms "${CELERIAC_DRAIN_TIMEOUT_MS:-30000}"
       --log-level "${CELERIAC_LOG_LEVEL:-info}")

IFS=: read -r -a dirs <<< "${CELERIAC_PLUGIN_DIRS:-/usr/local/lib/celeriac/plugins:/plugins}"
for d in "${dirs[@]}"; do
  for p in "$d"/*.so; do args+=(--plugin "$p"); done
done
IFS=, read -r -a extra <<< "${CELERIAC_PLUGINS:-}"
for p in "${extra[@]}"; do [ -n "$p" ] && args+=(--plugin "$p"); done

echo "celeriac-worker-entrypoint: celeriac-worker ${args[*]} $*" >&2
exec celeriac-worker "${args[@]}" "$@"

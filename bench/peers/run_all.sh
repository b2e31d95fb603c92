#!/usr/bin/env bash
# bench/peers/run_all.sh [N] [REPS] — every peer config REPS times (default N=20000, REPS=3), then the
# median row per config with the e2e spread (half the range, in % of the median).
# Env: ONLY=regex on "peer config" (e.g. ONLY='^(beanstalkd|bullmq)'), RQ_N (default min(N, 5000):
# RQ is ~30x slower), RESULTS (dir, default /dev/shm/celeriac-peers/all-DATE), plus everything
# run.sh reads (PIN, PAYLOAD, LAT_N, LAT_RATE, PHASE_TIMEOUT, REDIS_PERSIST, PY).
# celeriac runs through the same run.sh phases as every peer (its producer and bench.record task
# keep the same contract); its Redis always runs AOF everysec. Needs the release build (build/demo).
# Does not take /tmp/celeriac-build.lock itself: wrap it, e.g. flock /tmp/celeriac-build.lock bench/peers/run_all.sh
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
N=${1:-20000}; REPS=${2:-3}
PY=${PY:-/usr/bin/python3}
RQ_N=${RQ_N:-$(( N < 5000 ? N : 5000 ))}
MATRIX=(
  "celeriac w1" "celeriac w2" "celeriac w2-bp200" "celeriac w2-threads" "celeriac w2-solo" "celeriac w2-pipe"
  "celeriac w2-solo-pipe" "celeriac w2-solo-pf256-pipe"
  "beanstalkd w1" "beanstalkd w2" "beanstalkd w2-binlog"
  "celery solo" "celery prefork2"
  "rq w2-simple"
  "bullmq c50" "bullmq w2c1"
)
RESULTS=${RESULTS:-/dev/shm/celeriac-peers/all-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS"
ver() { "$@" 2>&1 | head -1; }
{
  echo "## peers benchmark $(date -Is) on $(hostname)"
  echo
  echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- PIN=${PIN:-0} ($( [ "${PIN:-0}" = 1 ] && echo 'servers on CPU 0, producer + workers on CPU 1 (taskset)' || echo 'unpinned')), PAYLOAD=${PAYLOAD:-100}, N=$N (rq: $RQ_N), REPS=$REPS"
  echo "- peers' Redis: $( [ "${REDIS_PERSIST:-off}" = everysec ] && echo "AOF appendfsync everysec (REDIS_PERSIST=everysec, like celeriac)" || echo "--save '' --appendonly no (their defaults); NOTE celeriac's own Redis runs with AOF appendfsync everysec (bench/lib.sh), set REDIS_PERSIST=everysec to match")"
  echo "- versions: redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'); $(ver beanstalkd -v);" \
       "python $("$PY" -c 'import platform; print(platform.python_version())')," \
       "$("$PY" -c 'import celery, kombu, redis, rq; print("celery %s, kombu %s, redis-py %s, rq %s" % (celery.__version__, kombu.__version__, redis.__version__, rq.__version__))' 2>&1 | tail -1);" \
       "node $(node -v 2>&1), $(cd "$HERE/node" && node -e 'for (const p of ["bullmq","ioredis"]) process.stdout.write(p+" "+require(p+"/package.json").version+" ")' 2>&1);" \
       "$(ver cc --version)"
  echo
} | tee "$RESULTS/header.md"

ROWS=$RESULTS/rows.md
: > "$ROWS"
for rep in $(seq "$REPS"); do
  for pc in "${MATRIX[@]}"; do
    [ -n "${ONLY:-}" ] && ! [[ $pc =~ $ONLY ]] && continue
    set -- $pc
    n=$N; [ "$1" = rq ] && n=$RQ_N
    echo "# rep $rep: $1 $2 N=$n" >&2
    row=$(LOG_DIR="$RESULTS/$1-$2-rep$rep" "$HERE/run.sh" "$1" "$2" "$n") || true
    [ -n "$row" ] || row="| $1 | $2 | $n | FAIL | FAIL | - | - | - | - | - |"
    echo "$row" | tee -a "$ROWS" >&2
  done
done
echo
echo "### all repetitions"; echo
echo "| peer | config | N | enqueue/s | e2e/s | p50 ms | p99 ms | max ms | cpu µs/task | redis cmds/task |"
echo "|---|---|---|---|---|---|---|---|---|---|"
cat "$ROWS"
echo
echo "### medians of $REPS"; echo
"$PY" "$HERE/analyze.py" median < "$ROWS" | tee "$RESULTS/median.md"
echo
echo "### per run: drain, producer rate under load (e2e phase), CPU µs/task by process group (e2e phase)"; echo
echo "| run | drain/s | enq@load/s | producer | servers | workers | total |"
echo "|---|---|---|---|---|---|---|"
for m in "$RESULTS"/*/meta.txt; do
  [ -f "$m" ] || continue
  awk -v run="$(basename "$(dirname "$m")")" '
    /^enqueue\/s=/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    /^cpu / { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END { printf "| %s | %s | %s | %s | %s | %s | %s |\n", run, v["drain/s"], v["enq@load/s"], v["producer"], v["servers"], v["workers"], v["total"] }' "$m"
done
echo
echo "(per-run logs, records, CPU breakdown and Redis commands by type: $RESULTS/*/meta.txt)"

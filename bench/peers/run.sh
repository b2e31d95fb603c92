#!/usr/bin/env bash
# bench/peers/run.sh PEER CONFIG N — one peer configuration, all phases, one markdown row on stdout:
#   | peer | config | N | enqueue/s | e2e/s | p50 ms | p99 ms | max ms | cpu µs/task | redis cmds/task |
# PEER/CONFIG: celeriac wK[-threads|-solo][-pfN][-bpN][-pipe] · beanstalkd w1|w2|w2-binlog · celery solo|prefork2 ·
#              rq w1-simple|w2-simple|w1-fork|w2-fork · bullmq c1|c50|w2c1 (wKcC = K worker
#              processes with concurrency C)
# Phases (seq ranges never overlap, records from every phase stay in $LOG_DIR/rec):
#   1 enqueue  N tasks, no worker running            -> enqueue/s (producer: first call -> last ack)
#   2 drain    start the workers on that backlog     -> drain/s (logged only)
#   3 e2e      workers idle, N more tasks            -> N / (last task start - first enqueue);
#              CPU (utime+stime incl. children, /proc) of producer, servers, workers and Redis
#              INFO commandstats are diffed over this phase
#   4 latency  LAT_N tasks paced at LAT_RATE/s       -> enqueue->start p50 / p99 / max
# Env: PIN=1 (servers on CPU 0, producer + workers on CPU 1, via taskset), PAYLOAD (pad bytes, 100),
#      LAT_N / LAT_RATE (1000 / 500; rq: 300 / 100), PHASE_TIMEOUT (s, 115),
#      REDIS_PERSIST=off|everysec (off = peers' default: --save '' --appendonly no; everysec = AOF
#      appendfsync everysec, like celeriac's own Redis), LOG_DIR (default: a new dir under
#      /dev/shm/celeriac-peers), PY (interpreter with Debian's celery/rq: /usr/bin/python3).
# Every server runs on a free loopback port in its own temp dir; everything started here is stopped
# (by process group id) on exit, failure included.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib.sh" # bench_wait_broker
[ $# -eq 3 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
PEER=$1 CONFIG=$2 N=$3
PY=${PY:-/usr/bin/python3}
export PAYLOAD=${PAYLOAD:-100}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-115}
PIN=${PIN:-0}
REDIS_PERSIST=${REDIS_PERSIST:-off}
if [ "$PEER" = rq ]; then LAT_N=${LAT_N:-300} LAT_RATE=${LAT_RATE:-100}; else LAT_N=${LAT_N:-1000} LAT_RATE=${LAT_RATE:-500}; fi
ANALYZE=("$PY" "$HERE/analyze.py")
HZ=$(getconf CLK_TCK)

if [ -z "${LOG_DIR:-}" ]; then
  mkdir -p /dev/shm/celeriac-peers
  LOG_DIR=$(mktemp -d "/dev/shm/celeriac-peers/$PEER-$CONFIG-N$N-$(date +%Y%m%d-%H%M%S)-XXXX")
fi
mkdir -p "$LOG_DIR/rec"
REC=$LOG_DIR/rec
export BENCH_REC_DIR=$REC BENCH_QUEUE=bench
META=$LOG_DIR/meta.txt
log() { echo "$*" >> "$META"; }
log "peer=$PEER config=$CONFIG N=$N PIN=$PIN PAYLOAD=$PAYLOAD LAT_N=$LAT_N LAT_RATE=$LAT_RATE REDIS_PERSIST=$REDIS_PERSIST date=$(date -Is) load=$(cut -d' ' -f1-3 /proc/loadavg)"

if [ "$PIN" = 1 ]; then SRV_PIN=(taskset -c 0) CLI_PIN=(taskset -c 1); else SRV_PIN=() CLI_PIN=(); fi

# --- process management: every background process gets its own process group (setsid) ---
SRV_TMP=$(mktemp -d)
GROUPS_STARTED=() SERVER_PIDS=()
# stop_groups GROUP...: TERM each process group, wait up to 5 s, then KILL what is left.
stop_groups() {
  local g alive
  [ $# -gt 0 ] || return 0
  for g in "$@"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for g in "$@"; do kill -0 -- "-$g" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for g in "$@"; do kill -KILL -- "-$g" 2>/dev/null || true; done
}
cleanup() {
  local rc=$? g clients=()
  # clients (workers) first, so that they do not log connection errors, then the servers
  for g in "${GROUPS_STARTED[@]}"; do [[ " ${SERVER_PIDS[*]} " == *" $g "* ]] || clients+=("$g"); done
  stop_groups "${clients[@]}"
  stop_groups "${SERVER_PIDS[@]}"
  wait 2>/dev/null || true
  cp "$SRV_TMP"/*.log "$LOG_DIR/" 2>/dev/null || true
  rm -rf "$SRV_TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_bg NAME PINKIND CMD...: starts CMD in its own session/process group, logs to $LOG_DIR/NAME.log
LAST_PID=
start_bg() {
  local name=$1 kind=$2; shift 2
  local pin=(); [ "$kind" = srv ] && pin=("${SRV_PIN[@]}"); [ "$kind" = cli ] && pin=("${CLI_PIN[@]}")
  "${pin[@]}" setsid "$@" > "$LOG_DIR/$name.log" 2>&1 < /dev/null &
  LAST_PID=$!
  GROUPS_STARTED+=("$LAST_PID")
  log "started $name pid=$LAST_PID: ${pin[*]} $*"
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 not ready" >&2; return 1; }

# --- servers ---
USES_REDIS=0
start_redis() {
  RP=$(free_port)
  local persist=(--save '' --appendonly no)
  [ "$REDIS_PERSIST" = everysec ] && persist=(--save '' --appendonly yes --appendfsync everysec)
  start_bg redis srv redis-server --port "$RP" --bind 127.0.0.1 --dir "$SRV_TMP" "${persist[@]}" --logfile "$SRV_TMP/redis-server.log"
  SERVER_PIDS+=("$LAST_PID"); USES_REDIS=1
  wait_port "$RP"
  for _ in $(seq 100); do [ "$(redis-cli -p "$RP" ping 2>/dev/null)" = PONG ] && break; sleep 0.05; done
  export BENCH_REDIS_PORT=$RP BENCH_REDIS_URL="redis://127.0.0.1:$RP/0"
}

# --- the peers: setup (servers, builds), producer (SEQ0 COUNT RATE), workers (from CONFIG) ---
BUILD_DIR=${BUILD_DIR:-/tmp/celeriac-peers-build}
case "$PEER" in
  beanstalkd)
    mkdir -p "$BUILD_DIR"
    for b in bs_producer bs_worker; do
      if [ ! -x "$BUILD_DIR/$b" ] || [ -n "$(find "$HERE/c" -newer "$BUILD_DIR/$b" -name '*.[ch]')" ]; then
        cc -O2 -Wall -o "$BUILD_DIR/$b.tmp.$$" "$HERE/c/$b.c" && mv "$BUILD_DIR/$b.tmp.$$" "$BUILD_DIR/$b"
      fi
    done
    BP=$(free_port)
    # wK: no binlog (beanstalkd's default: jobs in memory only). wK-binlog: its write-ahead log
    # in the same directory as celeriac's AOF, fsync at most once a second like AOF everysec.
    BINLOG=()
    case "$CONFIG" in
      w[0-9]*-binlog) NW=${CONFIG%-binlog}; NW=${NW#w}; mkdir -p "$SRV_TMP/binlog"; BINLOG=(-b "$SRV_TMP/binlog" -f 1000) ;;
      w[0-9]*) NW=${CONFIG#w} ;;
      *) echo "beanstalkd config: wK or wK-binlog" >&2; exit 2 ;;
    esac
    start_bg beanstalkd srv beanstalkd -l 127.0.0.1 -p "$BP" "${BINLOG[@]}"
    SERVER_PIDS+=("$LAST_PID"); wait_port "$BP"
    PRODUCER=("$BUILD_DIR/bs_producer" 127.0.0.1 "$BP" bench)
    start_workers() { for i in $(seq "$NW"); do start_bg "worker$i" cli "$BUILD_DIR/bs_worker" 127.0.0.1 "$BP" bench "$REC"; WORKER_PIDS+=("$LAST_PID"); done; }
    ;;
  celery)
    start_redis
    export PYTHONPATH="$HERE/py${PYTHONPATH:+:$PYTHONPATH}"
    PRODUCER=("$PY" "$HERE/py/producer.py" celery)
    case "$CONFIG" in
      solo) POOL=(-P solo) ;;
      prefork2) POOL=(-P prefork -c 2) ;;
      *) echo "celery config: solo|prefork2" >&2; exit 2 ;;
    esac
    start_workers() {
      start_bg worker1 cli "$PY" -m celery -A celery_app worker "${POOL[@]}" --loglevel WARNING -n "bench1@%h"
      WORKER_PIDS+=("$LAST_PID")
    }
    ;;
  rq)
    start_redis
    export PYTHONPATH="$HERE/py${PYTHONPATH:+:$PYTHONPATH}"
    PRODUCER=("$PY" "$HERE/py/producer.py" rq)
    case "$CONFIG" in
      w[0-9]*-simple) NW=${CONFIG%-simple}; NW=${NW#w}; WCLASS=(--worker-class rq.worker.SimpleWorker) ;;
      w[0-9]*-fork) NW=${CONFIG%-fork}; NW=${NW#w}; WCLASS=() ;;
      *) echo "rq config: wK-simple|wK-fork" >&2; exit 2 ;;
    esac
    start_workers() {
      for i in $(seq "$NW"); do
        start_bg "worker$i" cli "$PY" -c 'import sys; from rq.cli import main; sys.argv[0] = "rq"; sys.exit(main())' \
          worker --url "$BENCH_REDIS_URL" "${WCLASS[@]}" --logging_level WARNING "$BENCH_QUEUE"
        WORKER_PIDS+=("$LAST_PID")
      done
    }
    ;;
  bullmq)
    start_redis
    [ -d "$HERE/node/node_modules/bullmq" ] || { echo "run bench/peers/install.sh first" >&2; exit 1; }
    PRODUCER=(node "$HERE/node/producer.js")
    case "$CONFIG" in
      c[0-9]*) NW=1 CONC=${CONFIG#c} ;;
      w[0-9]*c[0-9]*) NW=${CONFIG%%c*}; NW=${NW#w}; CONC=${CONFIG#*c} ;;
      *) echo "bullmq config: cC|wKcC" >&2; exit 2 ;;
    esac
    start_workers() { for i in $(seq "$NW"); do start_bg "worker$i" cli node "$HERE/node/worker.js" "$CONC"; WORKER_PIDS+=("$LAST_PID"); done; }
    ;;
  celeriac)
    # Its own Redis always keeps AOF (everysec): an acknowledged enqueue is on disk within 1 s.
    # The release build in $CELERIAC_BUILD (default build/demo, as bench/lib.sh makes it).
    CB=${CELERIAC_BUILD:-$HERE/../../build/demo}
    [ -x "$CB/bench/celeriac-bench-producer" ] || { echo "build celeriac first (bench/run.sh or: cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build/demo)" >&2; exit 1; }
    REDIS_PERSIST=everysec start_redis
    CP=$(free_port)
    # wK = K worker processes (prefork pool, one child each, prefetch 64); -threads: thread pool;
    # -solo: tasks run in the worker process itself; -pfN: prefetch N; -bpN: the broker's
    # --busy-poll-us N; -pipe: the producer keeps 256 enqueues in flight (async API) instead of
    # waiting for each.
    BUSY=0; [[ $CONFIG =~ -bp([0-9]+) ]] && BUSY=${BASH_REMATCH[1]}
    start_bg celeriacd srv "$CB/server/celeriacd" --port "$CP" --redis-port "$RP" --log-level warn \
      --busy-poll-us "$BUSY"
    SERVER_PIDS+=("$LAST_PID"); bench_wait_broker "$CP"
    PRODUCER=("$CB/bench/celeriac-bench-producer" "127.0.0.1:$CP" bench)
    NW=${CONFIG%%-*}; NW=${NW#w}; POOLK=prefork; PREFETCH=64
    [[ $CONFIG == *-threads* ]] && POOLK=threads
    [[ $CONFIG == *-solo* ]] && POOLK=solo
    [[ $CONFIG =~ -pf([0-9]+) ]] && PREFETCH=${BASH_REMATCH[1]}
    [[ $CONFIG == *-pipe* ]] && export BENCH_WINDOW=256
    [[ $NW =~ ^[0-9]+$ ]] || { echo "celeriac config: wK[-threads|-solo][-pfN][-bpN][-pipe]" >&2; exit 2; }
    start_workers() {
      for i in $(seq "$NW"); do
        BENCH_REC_DIR=$REC start_bg "worker$i" cli "$CB/worker/celeriac-worker" --broker "127.0.0.1:$CP" \
          --queues bench --pool "$POOLK" --concurrency 1 --prefetch "$PREFETCH" --log-level warn \
          --plugin "$CB/bench/libbenchrecord.so"
        WORKER_PIDS+=("$LAST_PID")
      done
    }
    ;;
  *) echo "unknown peer $PEER (celeriac|beanstalkd|celery|rq|bullmq)" >&2; exit 2 ;;
esac
WORKER_PIDS=()

# run_producer NAME SEQ0 COUNT RATE: runs the producer (pinned like the workers) and writes its ENQ
# line to $LOG_DIR/NAME.enq and its CPU ticks (whole process tree, reaped) to $LOG_DIR/NAME.ticks.
run_producer() {
  local name=$1; shift
  (
    rc=0
    "${CLI_PIN[@]}" "${PRODUCER[@]}" "$@" > "$LOG_DIR/$name.enq" 2> "$LOG_DIR/$name.err" || rc=$?
    read -ra st < "/proc/$BASHPID/stat"
    echo $(( st[15] + st[16] )) > "$LOG_DIR/$name.ticks"   # cutime + cstime of this subshell
    exit "$rc" # a producer that saw failed enqueues fails the run, at once
  ) || { echo "producer failed ($name): $(tail -3 "$LOG_DIR/$name.err")" >&2; return 1; }
}
wait_records() { # LO HI TIMEOUT
  "${ANALYZE[@]}" wait "$REC" "$1" "$2" "$3" 2>> "$META" || { echo "FAIL: $PEER $CONFIG: tasks missing in [$1,$2) after $3 s (see $LOG_DIR)" >&2; return 1; }
}
snapshot() { # PREFIX: CPU ticks of servers / workers, Redis command count
  "${ANALYZE[@]}" ticks "${SERVER_PIDS[@]}" > "$LOG_DIR/$1.srv.ticks"
  "${ANALYZE[@]}" ticks "${WORKER_PIDS[@]}" > "$LOG_DIR/$1.wrk.ticks"
  if [ "$USES_REDIS" = 1 ]; then redis-cli -p "$RP" info commandstats > "$LOG_DIR/$1.cmdstats"; fi
}
fail_row() { echo "| $PEER | $CONFIG | $N | FAIL | FAIL | - | - | - | - | - |"; exit 1; }
val() { grep "^$1=" "$2" | cut -d= -f2; }

# 1. enqueue, no worker
run_producer enqueue 0 "$N" 0 || fail_row
ENQ_RATE=$("${ANALYZE[@]}" enq "$LOG_DIR/enqueue.enq")
# 2. drain: the workers start on the backlog
start_workers
wait_records 0 "$N" $((PHASE_TIMEOUT + 30)) || fail_row
"${ANALYZE[@]}" phase "$REC" 0 "$N" > "$LOG_DIR/drain.txt"
sleep 1   # let the workers go idle
# 3. e2e
snapshot e2e0
run_producer e2e "$N" "$N" 0 || fail_row
wait_records "$N" $((2 * N)) "$PHASE_TIMEOUT" || fail_row
snapshot e2e1
"${ANALYZE[@]}" phase "$REC" "$N" $((2 * N)) "$LOG_DIR/e2e.enq" > "$LOG_DIR/e2e.txt"
# 4. latency at low load
sleep 0.5
L0=$((2 * N))
run_producer latency "$L0" "$LAT_N" "$LAT_RATE" || fail_row
wait_records "$L0" $((L0 + LAT_N)) "$PHASE_TIMEOUT" || fail_row
"${ANALYZE[@]}" phase "$REC" "$L0" $((L0 + LAT_N)) "$LOG_DIR/latency.enq" > "$LOG_DIR/latency.txt"

# --- numbers ---
us() { awk -v t="$1" -v hz="$HZ" -v n="$N" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'; }
P_T=$(cat "$LOG_DIR/e2e.ticks")
S_T=$(( $(cat "$LOG_DIR/e2e1.srv.ticks") - $(cat "$LOG_DIR/e2e0.srv.ticks") ))
W_T=$(( $(cat "$LOG_DIR/e2e1.wrk.ticks") - $(cat "$LOG_DIR/e2e0.wrk.ticks") ))
CPU=$(us $((P_T + S_T + W_T)))
CMDS=-
if [ "$USES_REDIS" = 1 ]; then
  c0=$("${ANALYZE[@]}" cmds "$LOG_DIR/e2e0.cmdstats"); c1=$("${ANALYZE[@]}" cmds "$LOG_DIR/e2e1.cmdstats")
  CMDS=$(awk -v a="$c0" -v b="$c1" -v n="$N" 'BEGIN { printf "%.1f", (b - a - 1) / n }')  # -1: the first INFO itself
  log "redis commands in e2e by type:"
  "$PY" - "$LOG_DIR/e2e0.cmdstats" "$LOG_DIR/e2e1.cmdstats" "$N" >> "$META" <<'PYEOF'
import sys
def load(p):
    d = {}
    for line in open(p):
        if line.startswith("cmdstat_"):
            k, v = line.split(":", 1)
            d[k[8:]] = int(v.split("calls=")[1].split(",")[0])
    return d
a, b, n = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
for k in sorted(b, key=lambda k: -(b[k] - a.get(k, 0))):
    if b[k] - a.get(k, 0):
        print("  %-16s %8d  %.2f/task" % (k, b[k] - a.get(k, 0), (b[k] - a.get(k, 0)) / n))
PYEOF
fi
for ph in drain e2e latency; do
  if [ "$(val lost "$LOG_DIR/$ph.txt")" != 0 ] || [ "$(val duplicates "$LOG_DIR/$ph.txt")" != 0 ]; then
    echo "WARNING: $PEER $CONFIG $ph: lost=$(val lost "$LOG_DIR/$ph.txt") duplicates=$(val duplicates "$LOG_DIR/$ph.txt")" >&2
  fi
done
log "enqueue/s=$ENQ_RATE drain/s=$(val drain_per_s "$LOG_DIR/drain.txt") e2e/s=$(val e2e_per_s "$LOG_DIR/e2e.txt") enq@load/s=$(val producer_per_s "$LOG_DIR/e2e.txt")"
log "cpu µs/task over e2e: producer=$(us "$P_T") servers=$(us "$S_T") workers=$(us "$W_T") total=$CPU (HZ=$HZ)"
log "latency ($LAT_N @ $LAT_RATE/s): p50=$(val lat_p50_ms "$LOG_DIR/latency.txt") p99=$(val lat_p99_ms "$LOG_DIR/latency.txt") max=$(val lat_max_ms "$LOG_DIR/latency.txt") ms"
printf '| %s | %s | %s | %.0f | %.0f | %.2f | %.2f | %.2f | %s | %s |\n' "$PEER" "$CONFIG" "$N" "$ENQ_RATE" \
  "$(val e2e_per_s "$LOG_DIR/e2e.txt")" "$(val lat_p50_ms "$LOG_DIR/latency.txt")" "$(val lat_p99_ms "$LOG_DIR/latency.txt")" \
  "$(val lat_max_ms "$LOG_DIR/latency.txt")" "$CPU" "$CMDS"
echo "log: $LOG_DIR" >&2

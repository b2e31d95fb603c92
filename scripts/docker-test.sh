#!/usr/bin/env bash
# The docker-compose deployment, built and run end to end (docs/docker.md):
#   1. installs docker.io, docker-compose (1.29) and debootstrap with apt-get, and the pinned
#      linters (docker/package-lock.json) with npm ci into a temp dir; lints docker/Dockerfile*
#      and the compose files, and validates them with `docker-compose config -q`;
#   2. starts a private dockerd (socket, data and exec roots in a temp dir; nothing is pulled:
#      the base image is a debootstrap of bookworm imported as debian:bookworm-slim, and Redis
#      is a local stand-in built as redis:7-bookworm from docker/Dockerfile.redis);
#   3. builds the images, brings the stack up with 2 workers, enqueues CELERIAC_DOCKER_TASKS
#      (default 2000) short celeriac.sleep tasks from a client container, SIGKILLs one worker
#      container mid-stream, waits for every result and fails unless all of them succeeded;
#      then checks that `docker stop` (SIGTERM through tini) drains a worker: its running task
#      finishes and the worker exits 0;
#   4. tears everything down: containers, volumes, networks, dockerd, bridges, the iptables
#      rules dockerd added, the temp dir.
# Needs root; prints "SKIP: ..." and exits 0 when not root or when CELERIAC_SKIP_DOCKER=1.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CELERIAC_SKIP_DOCKER:-0}" = 1 ]; then
  echo "SKIP: docker-compose e2e test (CELERIAC_SKIP_DOCKER=1)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: docker-compose e2e test needs root (it installs docker.io and runs its own dockerd)"
  exit 0
fi

TASKS=${CELERIAC_DOCKER_TASKS:-2000}
SLEEP_S=${CELERIAC_DOCKER_TASK_SECONDS:-0.03}
PROJECT=celeriacci
START=$(date +%s.%N)
LAST=$START
phase() {
  local now
  now=$(date +%s.%N)
  awk -v n="$now" -v s="$START" -v l="$LAST" -v m="$*" 'BEGIN {printf "[%6.1fs +%5.1fs] %s\n", n - s, n - l, m}'
  LAST=$now
}
die() { echo "FAIL: $*" >&2; exit 1; }

# The compose file reads CELERIAC_* from the environment: run with its defaults, not with
# whatever the caller's shell has set (CELERIAC_BROKER for the CLI, say).
while read -r v; do
  case $v in CELERIAC_DOCKER_*|CELERIAC_SKIP_DOCKER) ;; *) unset "$v" ;; esac
done < <(compgen -e | grep '^CELERIAC_' || true)

# ---- 1. packages, linters, compose validation ---------------------------------------------
PKGS=(docker.io docker-compose debootstrap iptables iproute2)
command -v npm >/dev/null || PKGS+=(nodejs npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
phase "packages ready (docker.io, docker-compose $(docker-compose version --short), debootstrap)"

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ -S "$W/docker.sock" ]; then
    if [ "$rc" -ne 0 ]; then
      echo "---- docker-compose ps / logs (last 30 lines each) ----"
      "${DC[@]}" ps
      "${DC[@]}" logs --no-color --tail 30
    fi
    "${DC[@]}" --profile e2e down -v --remove-orphans -t 5 > "$W/down.log" 2>&1 \
      || cat "$W/down.log"
  fi
  if [ -f "$W/dockerd.pid" ]; then
    local pid
    pid=$(cat "$W/dockerd.pid")
    kill "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null
    [ "$rc" -ne 0 ] && { echo "---- dockerd.log (last 20 lines) ----"; tail -n 20 "$W/dockerd.log"; }
  fi
  # Bridges and veths dockerd made, its iptables rules, ip_forward: back as they were.
  local l
  for l in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort | comm -13 <(echo "$LINKS_BEFORE") -); do
    case $l in docker0|br-*|veth*) ip link del "$l" 2>/dev/null ;; esac
  done
  [ -s "$W/iptables.filter" ] && iptables-restore < "$W/iptables.filter"
  [ -s "$W/iptables.nat" ] && iptables-restore < "$W/iptables.nat"
  echo "$IP_FORWARD" > /proc/sys/net/ipv4/ip_forward
  [ "$HAD_ETC_KEY" = 1 ] || rm -f /etc/docker/key.json
  [ "$HAD_RUN_DOCKER" = 1 ] || rm -rf /run/docker
  grep -o " ${W}[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$W"
  phase "torn down (containers, volumes, networks, dockerd, bridges, iptables rules, $W)"
  if [ "$rc" -eq 0 ]; then echo "docker-compose e2e: PASS"; else echo "docker-compose e2e: FAIL (rc $rc)"; fi
  exit "$rc"
}

W=$(mktemp -d /tmp/celeriac-docker.XXXXXX)
export DOCKER_HOST=unix://$W/docker.sock
DC=(docker-compose -p "$PROJECT" -f docker/docker-compose.yml -f docker/docker-compose.ci.yml)
RUN=("${DC[@]}" --profile e2e run --rm --no-deps -T e2e)
LINKS_BEFORE=$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort)
IP_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward)
HAD_ETC_KEY=0 HAD_RUN_DOCKER=0   # dockerd writes /etc/docker/key.json and /run/docker/plugins
[ -e /etc/docker/key.json ] && HAD_ETC_KEY=1
[ -e /run/docker ] && HAD_RUN_DOCKER=1
trap cleanup EXIT
trap 'exit 130' INT TERM
# iptables-restore replaces a whole table (dockerd's chains go too); an empty save means an
# empty table, so write the empty table out in full.
iptables-save -t filter > "$W/iptables.filter"
grep -q '^\*filter' "$W/iptables.filter" \
  || printf '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n' > "$W/iptables.filter"
iptables-save -t nat > "$W/iptables.nat"
grep -q '^\*nat' "$W/iptables.nat" \
  || printf '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n' > "$W/iptables.nat"

mkdir -p "$W/lint"
cp docker/package.json docker/package-lock.json "$W/lint/"
(cd "$W/lint" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error > "$W/npm.log" 2>&1) \
  || { cat "$W/npm.log"; die "npm ci of the linters"; }
BIN=$W/lint/node_modules/.bin
out=$(cd docker && "$BIN/dclint" docker-compose.yml docker-compose.ci.yml -c .dclintrc --max-warnings 0 2>&1) \
  || { echo "$out"; die "dclint"; }
for f in docker/Dockerfile docker/Dockerfile.redis; do
  out=$("$BIN/dockerfile-utils" lint "$f") || { echo "$out"; die "dockerfile-utils lint $f"; }
  [ -z "$out" ] || { echo "$out"; die "dockerfile-utils lint $f: warnings"; }
done
docker-compose -f docker/docker-compose.yml config -q || die "docker-compose config (shipped file)"
"${DC[@]}" config -q || die "docker-compose config (with the CI override)"
phase "linted (dclint, dockerfile-utils) and validated (docker-compose config -q)"

# ---- 2. private dockerd and base image ------------------------------------------------------
MIRROR=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  MIRROR=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$MIRROR" ] && [ -f /etc/apt/sources.list ]; then
  MIRROR=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' /etc/apt/sources.list)
fi
[ -n "$MIRROR" ] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"

debootstrap --variant=minbase bookworm "$W/rootfs" "$MIRROR" > "$W/debootstrap.log" 2>&1 \
  || { tail -n 20 "$W/debootstrap.log"; die "debootstrap"; }
phase "debootstrap bookworm minbase ($(du -sh "$W/rootfs" | cut -f1))"

# dockerd gets no inherited descriptors beyond stdio: under `flock LOCK scripts/docker-test.sh`
# it (and containerd) would otherwise hold the lock until they exit.
# shellcheck disable=SC2016
bash -c 'for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done
  exec dockerd --data-root "$1/data" --exec-root "$1/exec" -H "$2" --pidfile "$1/dockerd.pid"' \
  _ "$W" "$DOCKER_HOST" > "$W/dockerd.log" 2>&1 < /dev/null &
for _ in $(seq 150); do docker version > /dev/null 2>&1 && break; sleep 0.2; done
docker version > /dev/null 2>&1 || { tail -n 20 "$W/dockerd.log"; die "dockerd did not start"; }
tar -C "$W/rootfs" -c . | docker import - debian:bookworm-slim > /dev/null
rm -rf "$W/rootfs"
phase "dockerd $(docker version -f '{{.Server.Version}}') up on $DOCKER_HOST; base image imported as debian:bookworm-slim"

# ---- 3. build, up, produce, kill a worker, check every result ---------------------------------
"${DC[@]}" build > "$W/build.log" 2>&1 || { tail -n 40 "$W/build.log"; die "docker-compose build"; }
phase "images built: $(docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(celeriac|redis|debian):' | paste -sd ',' | sed 's/,/, /g') (the base is a debootstrap minbase, larger than the real slim)"

# A free loopback port for the published broker port (the host may run a broker on 7878).
CELERIAC_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || echo $((20000 + RANDOM % 20000)))
export CELERIAC_PORT
"${DC[@]}" up -d --no-build --scale worker=2 > "$W/up.log" 2>&1 || { cat "$W/up.log"; die "docker-compose up"; }
BROKER=$("${DC[@]}" ps -q broker)
for _ in $(seq 100); do
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$BROKER")" = healthy ] && break
  sleep 0.3
done
[ "$(docker inspect -f '{{.State.Health.Status}}' "$BROKER")" = healthy ] || die "broker not healthy"
# The text protocol over the broker's loopback (only there: --text loopback) lists workers.
workers() {
  docker exec "$BROKER" bash -c 'exec 3<>/dev/tcp/127.0.0.1/7878; echo WORKERS >&3; read -r l <&3; echo "$l"' \
    | grep -o '"name"' | wc -l
}
for _ in $(seq 100); do [ "$(workers)" -ge 2 ] && break; sleep 0.3; done
[ "$(workers)" -ge 2 ] || die "2 workers did not connect"
# The published port answers on the host (a text line from a non-loopback peer gets an ERR).
reply=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$CELERIAC_PORT; echo PING >&3; read -r l <&3; echo \"\$l\"") \
  || die "published port 127.0.0.1:$CELERIAC_PORT does not answer"
phase "stack up: redis, broker (healthy, published on 127.0.0.1:$CELERIAC_PORT, says '${reply%% text*}...'), 2 workers connected"

stat() {  # one counter of the broker's stats
  docker exec "$BROKER" celeriac stats | sed -n "s/^  \"$1\": \([0-9]*\),\?$/\1/p"
}
# The optional demo service: the example producer, word counts by the plugin baked into the
# image (loaded from /usr/local/lib/celeriac/plugins by the worker entrypoint) and echoes.
"${DC[@]}" --profile demo run --rm -T demo > "$W/demo.log" 2>&1 || { cat "$W/demo.log"; die "demo service"; }
phase "demo service: $(grep -o '[0-9]* succeeded, [0-9]* failed' "$W/demo.log")"
BASE=$(stat acked)
# shellcheck disable=SC2016  # the scripts below expand in the e2e container
# The producer: a client container on the compose network enqueueing with the CLI, 4 at a
# time so that a backlog builds up and every worker slot is busy when the kill comes.
"${RUN[@]}" bash -c '
  seq 1 "$1" | xargs -P 4 -I{} celeriac enqueue --id "e2e-{}" celeriac.sleep "$2" > /dev/null' \
  _ "$TASKS" "$SLEEP_S" > "$W/producer.log" 2>&1 &
PRODUCER=$!
# Kill one worker (SIGKILL to tini: the whole container dies) once a quarter is done.
for _ in $(seq 600); do
  done_n=$(stat acked)
  [ "${done_n:-0}" -ge $((BASE + TASKS / 4)) ] && break
  kill -0 "$PRODUCER" 2>/dev/null || break
  sleep 0.1
done
VICTIM=$("${DC[@]}" ps -q worker | sed -n 1p)  # sed reads all: no SIGPIPE under pipefail
leased=$(docker exec "$BROKER" bash -c 'exec 3<>/dev/tcp/127.0.0.1/7878; echo WORKERS >&3; read -r l <&3; echo "$l"' \
  | grep -o '"leased":[0-9]*' | paste -sd ' ')
docker kill "$VICTIM" > /dev/null
phase "killed worker ${VICTIM:0:12} (SIGKILL) at $(($(stat acked) - BASE))/$TASKS acked, $(($(stat enqueued) - BASE)) enqueued; tasks leased to the workers then: $leased"
wait "$PRODUCER" || { cat "$W/producer.log"; die "producer"; }
phase "producer enqueued $TASKS tasks"

# shellcheck disable=SC2016
RESULT=$("${RUN[@]}" bash -c '
  ok=0 bad=0 again=0
  for i in $(seq 1 "$1"); do
    if info=$(celeriac wait "e2e-$i" --timeout 120 --info); then ok=$((ok + 1)); else
      bad=$((bad + 1)); echo "e2e-$i: $info" >&2; fi
    case $info in *"\"attempt\":1,"*) ;; *) again=$((again + 1)) ;; esac
  done
  echo "$ok $bad $again"' _ "$TASKS" 2> "$W/checker.log") || true
read -r OK BAD AGAIN <<< "$RESULT"
grep "^e2e-" "$W/checker.log" | sed -n 1,20p || true
REQUEUED=$(stat requeued)
phase "results: ${OK:-?} succeeded, ${BAD:-?} not, of $TASKS enqueued; $AGAIN ran more than once; broker requeued $REQUEUED leases"
if [ "${OK:-0}" -ne "$TASKS" ] || [ "${BAD:-1}" -ne 0 ]; then
  die "tasks lost or failed: ${OK:-0}/$TASKS succeeded"
fi
[ "$(($(stat acked) - BASE))" -ge "$TASKS" ] || die "broker acked $(($(stat acked) - BASE)) < $TASKS"

# SIGTERM drains: a running task finishes, then the worker exits 0 (not SIGKILLed at the grace).
SURVIVOR=$(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
  --filter "label=com.docker.compose.service=worker" | sed -n 1p)
[ -n "$SURVIVOR" ] || die "no running worker left"
docker exec "$BROKER" celeriac enqueue --id drain-1 celeriac.sleep 2 > /dev/null
for _ in $(seq 100); do
  docker exec "$BROKER" celeriac status drain-1 | grep -q '"state":"active"' && break
  sleep 0.1
done
t0=$(date +%s.%N)
docker stop -t 20 "$SURVIVOR" > /dev/null
stop_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
code=$(docker inspect -f '{{.State.ExitCode}}' "$SURVIVOR")
state=$(docker exec "$BROKER" celeriac wait drain-1 --timeout 10 --info | grep -o '"state":"[a-z]*"')
phase "docker stop (SIGTERM via tini) of worker ${SURVIVOR:0:12}: exit $code after ${stop_s}s, its running task $state"
[ "$code" -eq 0 ] || die "worker exited $code on SIGTERM (137 = killed at the grace period)"
[ "$state" = '"state":"succeeded"' ] || die "the task running at SIGTERM did not finish: $state"

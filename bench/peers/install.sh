#!/usr/bin/env bash
# Installs what the peer drivers need (idempotent): Debian beanstalkd, Celery, redis-py, RQ, and
# the pinned npm packages in bench/peers/node (npm ci). Node itself is taken from the machine when
# present (`node -v`); Debian's nodejs + npm are installed only when there is no node at all.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-/usr/bin/python3}   # the Debian python3-* modules live in the system interpreter
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
need=()
command -v beanstalkd >/dev/null || need+=(beanstalkd)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
"$PY" -c 'import celery' 2>/dev/null || need+=(python3-celery)
"$PY" -c 'import redis' 2>/dev/null || need+=(python3-redis)
"$PY" -c 'import rq' 2>/dev/null || need+=(python3-rq)
command -v taskset >/dev/null || need+=(util-linux)
command -v cc >/dev/null || need+=(gcc libc6-dev)
# Node: keep the machine's node (e.g. nodesource's v20, which ships npm) when there is one; Debian's
# npm would pull Debian's nodejs over it, so a node without npm is reported, not "fixed".
if ! command -v node >/dev/null; then need+=(nodejs npm)
elif ! command -v npm >/dev/null; then echo "install.sh: node $(node -v) has no npm next to it" >&2; exit 1; fi
if [ ${#need[@]} -gt 0 ]; then
  echo "install.sh: apt-get install ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need[@]}"
fi
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || echo "install.sh: WARNING node $(node -v) < 20: ioredis 6 (node/package-lock.json) needs node >= 20" >&2
cd node
# npm ci always wipes node_modules: skip it when the tree was installed from this very lock file.
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f node_modules/.bench-lock-sha ] && [ "$(cat node_modules/.bench-lock-sha)" = "$want" ]; then
  echo "install.sh: node_modules up to date" >&2
else
  npm ci --no-audit --no-fund
  echo "$want" > node_modules/.bench-lock-sha
fi

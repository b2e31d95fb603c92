#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages celeriac builds, tests and runs with.
# Idempotent: packages already present are skipped, so repeated runs cost one dpkg query.
set -euo pipefail

PKGS=(build-essential cmake pkg-config
      libevent-dev libhiredis-dev libmsgpack-dev libcunit1-dev libjansson-dev libssl-dev
      redis-server redis-tools clang libclang-rt-dev netcat-openbsd procps valgrind python3)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "celeriac: installing ${missing[*]}" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package starts a system redis-server on :6379; celeriac never uses it (tests and the
# demo start their own on free ports), so leave the system service as the distribution set it up.

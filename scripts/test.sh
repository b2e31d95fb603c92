#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, builds with warnings as
# errors under ASan+UBSan, runs each libFuzzer target for a bounded time, then every ctest suite
# (unit, integration and fault tests start their own redis-server on free loopback ports), then
# the unit suites under valgrind (scripts/valgrind.sh), then the docker-compose deployment end to
# end (scripts/docker-test.sh, a private dockerd).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

BUILD=${CELERIAC_TEST_BUILD:-build/test}
cmake -S . -B "$BUILD" -DCELERIAC_WERROR=ON -DCELERIAC_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

if [ -f tests/fuzz/CMakeLists.txt ]; then
  scripts/fuzz.sh "${CELERIAC_FUZZ_SECONDS:-30}"
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd "$BUILD" && ctest --output-on-failure --timeout 600)

# The unit suites once more under valgrind memcheck, on a build without sanitizers.
scripts/valgrind.sh

# The docker-compose deployment, built and run for real (root only; says SKIP otherwise).
scripts/docker-test.sh

#!/usr/bin/env bash
# Runs the unit suites under valgrind memcheck on a build without sanitizers (build/valgrind):
# fails on any memory error or definite leak. Prefork pool children that crash on purpose
# (celeriac.crash writes to address 8) report their invalid write and die by SIGSEGV; that is
# the test, and it does not change the suite's exit status.
# --fair-sched=yes: valgrind runs one thread at a time, and without it a thread pool's runaway
# (spinning) task can hold that turn for seconds and starve the test's other threads.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build/valgrind
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DCELERIAC_WERROR=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
fail=0
for t in $(cd "$BUILD" && ctest -N -L unit | sed -n 's/^ *Test *#[0-9]*: //p'); do
  exe=$(find "$BUILD/tests" -type f -executable -name "$t" -print -quit)
  [ -n "$exe" ] || { echo "valgrind: $t is not a binary, skipped"; continue; }
  if (cd "$(dirname "$exe")" && valgrind -q --fair-sched=yes --error-exitcode=99 --leak-check=full \
        --errors-for-leak-kinds=definite --show-possibly-lost=no "./$t" > "/tmp/valgrind-$t.log" 2>&1); then
    echo "valgrind: $t clean"
  else
    echo "valgrind: $t FAILED (see /tmp/valgrind-$t.log)"; fail=1
  fi
done
exit $fail

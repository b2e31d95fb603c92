#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS (default 30) under ASan+UBSan, each over a copy of its
# checked-in corpus, and fails on any crash. `scripts/fuzz.sh --seed` rewrites the seed corpora.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build/fuzz
CC=clang cmake -S . -B "$BUILD" -DCELERIAC_FUZZ=ON -DCELERIAC_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
if [ "${1:-}" = "--seed" ]; then
  mkdir -p tests/fuzz/corpus/fuzz_frame tests/fuzz/corpus/fuzz_msg
  "$BUILD/tests/fuzz/fuzz_seed" tests/fuzz/corpus/fuzz_frame tests/fuzz/corpus/fuzz_msg
  exit 0
fi
SECONDS_EACH=${1:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in fuzz_frame fuzz_msg fuzz_text fuzz_redis_reply; do
  mkdir -p "$work/$target"
  cp tests/fuzz/corpus/$target/* "$work/$target/"
  if ! (cd "$work" && "$OLDPWD/$BUILD/tests/fuzz/$target" "$work/$target" -max_total_time="$SECONDS_EACH" \
        -max_len=65536 -timeout=10 -print_final_stats=1 > "$work/$target.log" 2>&1); then
    tail -40 "$work/$target.log"
    echo "fuzz: $target FAILED (crash input kept in $work is removed on exit; rerun to reproduce)"
    ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null | while read -r f; do
      mkdir -p build/fuzz-crashes && cp "$f" build/fuzz-crashes/; done
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$target.log" | grep -o '[0-9]*$' || echo '?')
  echo "fuzz: $target ok, $runs runs in ${SECONDS_EACH}s"
done

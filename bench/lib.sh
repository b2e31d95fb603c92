# Shared by the bench scripts (sourced): a release build and a stack on free loopback ports.
# After bench_stack: $BUILD, $RUN (temp dir), $RP (redis port), $BP (broker port), $R and $B
# (their pids); everything is stopped and removed on exit.
BUILD=build/demo

bench_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_wait_broker PORT: until the broker answers STATS (text protocol), which it does only once
# its Redis connection is ready; before that, enqueues are refused as unavailable.
bench_wait_broker() {
  local line
  for _ in $(seq 200); do
    line=$( (exec 3<> "/dev/tcp/127.0.0.1/$1" && printf 'STATS\r\n' >&3 && IFS= read -r -t 2 l <&3 &&
      printf '%s' "$l") 2> /dev/null) || true
    [[ $line == OK* ]] && return 0
    sleep 0.05
  done
  echo "broker on port $1 not ready" >&2
  return 1
}

# bench_stack FSYNC: build, then redis-server (AOF with FSYNC) and one celeriacd.
bench_stack() {
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" >/dev/null
  RUN=$(mktemp -d)
  RP=$(bench_port); BP=$(bench_port)
  redis-server --port "$RP" --bind 127.0.0.1 --dir "$RUN" --appendonly yes --appendfsync "$1" \
    --save '' --logfile "$RUN/r.log" & R=$!
  sleep 0.3
  "$BUILD/server/celeriacd" --port "$BP" --redis-port "$RP" --log-level warn --log-file "$RUN/b.log" & B=$!
  BENCH_PIDS=("$R" "$B")
  trap 'kill "${BENCH_PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$RUN"' EXIT
  bench_wait_broker "$BP"
}

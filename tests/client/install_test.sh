#!/bin/sh
# libceleriac as a user gets it: `cmake --install --component libceleriac` into a temp prefix,
# then the examples compiled against it with pkg-config alone, shared and static, and run.
# usage: install_test.sh BUILD_DIR SOURCE_DIR CC "EXTRA_CFLAGS"
set -eu
build=$1 src=$2 cc=$3 cflags=${4:-}
prefix=$(mktemp -d "${TMPDIR:-/tmp}/celeriac-install-XXXXXX")
trap 'rm -rf "$prefix"' EXIT
fail() { echo "install test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" --component libceleriac >/dev/null
pcfile=$(find "$prefix" -name libceleriac.pc)
[ -n "$pcfile" ] || fail "no libceleriac.pc installed"
export PKG_CONFIG_PATH="$(dirname "$pcfile")"
libdir=$(pkg-config --variable=libdir libceleriac)
for f in include/celeriac/celeriac.h include/celeriac/conn.h include/celeriac/proto.h bin/celeriac; do
    [ -e "$prefix/$f" ] || fail "$f not installed"
done
[ -e "$libdir/libceleriac.a" ] && [ -e "$libdir/libceleriac.so" ] || fail "libraries not in $libdir"

# The shared library exports the API and nothing without the project's prefixes (but for the
# linker's and the sanitizers' own symbols).
stray=$(nm -D --defined-only "$libdir/libceleriac.so" | awk '{print $3}' |
        grep -v -e '^celeriac_' -e '^cel_' -e '^__odr_asan\.cel' \
                -e '^_init$' -e '^_fini$' -e '^_edata$' -e '^_end$' -e '^__bss_start$' || true)
[ -z "$stray" ] || fail "libceleriac.so exports unprefixed symbols: $stray"

cd "$prefix"
# shellcheck disable=SC2086  # flags are word lists
for ex in hello_sync hello_async; do
    $cc $cflags -o "$ex-shared" "$src/examples/$ex.c" $(pkg-config --cflags --libs libceleriac) \
        $(pkg-config --libs libevent) || fail "$ex does not build against libceleriac.so"
    $cc $cflags -static-libgcc -o "$ex-static" "$src/examples/$ex.c" \
        $(pkg-config --cflags libceleriac) "$libdir/libceleriac.a" \
        $(pkg-config --static --libs libceleriac | sed 's/-lceleriac\b//') \
        || fail "$ex does not build against libceleriac.a"
done
# The static build needs no libceleriac.so at run time.
ldd ./hello_sync-static | grep -q libceleriac && fail "the static build loads libceleriac.so"

# With no broker they fail cleanly, saying where they tried.
for kind in shared static; do
    out=$(LD_LIBRARY_PATH="$libdir" ./hello_sync-$kind 127.0.0.1:1 2>&1) && fail "$kind: no error"
    echo "$out" | grep -q "127.0.0.1:1: Connection refused" || fail "$kind said: $out"
    st=0; LD_LIBRARY_PATH="$libdir" ./hello_async-$kind 0 2>/dev/null || st=$?
    [ "$st" = 2 ] || fail "hello_async-$kind 0 exited $st, not 2"
done
"$prefix/bin/celeriac" --help | grep -q "enqueue \[options\] TASK" || fail "installed CLI"
echo "install test: ok ($libdir)"

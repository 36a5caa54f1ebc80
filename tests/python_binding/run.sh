#!/bin/sh
#   run.sh - make check's step for the Python binding: bindings/python/tests
#
#   (Here, under tests/, so that test.sh counts its log with the others.)
#   pytest under Debian's /usr/bin/python3 (python3-pytest; python3-zmq and
#   python3-msgpack start and probe the broker) against real heraldd
#   processes, with the package imported from the source tree and
#   libherald from the build tree ($HERALD_BUILDDIR/.libs).  Exit status:
#   pytest's; its last line ("N passed in ...") is counted by test.sh.

srcdir=${HERALD_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${HERALD_BUILDDIR:-$(pwd)}
builddir=$(cd "$builddir" && pwd) || exit 99
HERALD_BUILDDIR=$builddir
export HERALD_BUILDDIR
cd "$srcdir" || exit 99
#   A libherald built with --enable-sanitizers (./test.sh --sanitize) needs
#   ASan loaded first in the interpreter that dlopens it; Python's own
#   allocations are not ours to leak-check.
lib="$builddir/.libs/libherald.so.1"
asan=$(ldd "$lib" 2>/dev/null | awk '/libasan/ { print $3; exit }')
if [ -n "$asan" ]; then
    LD_PRELOAD="$asan${LD_PRELOAD:+ $LD_PRELOAD}"
    ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export LD_PRELOAD ASAN_OPTIONS
fi
#   Nothing is written into the source tree: no bytecode, no .pytest_cache.
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
/usr/bin/python3 -m pytest -q -p no:cacheprovider bindings/python/tests
exit $?

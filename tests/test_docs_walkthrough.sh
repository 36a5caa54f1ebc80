#!/bin/sh
#   test_docs_walkthrough - the README's Quick start, the examples'
#   walk-throughs (C and Python), the Python tour, security.md's "Turning
#   security on in five minutes", operations.md's backup and restore and
#   metrics.md's "Trying it", run exactly as printed
#
#   tests/walkthrough.py takes the commands from the Markdown (the lines the
#   documents mark with <!-- walkthrough: ... --> comments) and runs them as
#   a reader would, in terminals of their own, checking what the documents
#   say they print.  The documents use the default endpoints (ports 5580 and
#   5581; security.md 5680 to 5682 and var/secure, metrics.md 5780, 5781,
#   9464 and var/metrics, so that its broker could
#   run beside the Quick start's), so this runs in a network namespace of its
#   own (unshare -n, as root): the ports are free there whatever else runs on the machine, and
#   the commands run verbatim.  Skipped (77) where that is not possible.

srcdir=${HERALD_SRCDIR:-$(dirname "$0")/..}
srcdir=$(cd "$srcdir" && pwd) || exit 99
builddir=${HERALD_BUILDDIR:-$(pwd)}
builddir=$(cd "$builddir" && pwd) || exit 99
docs="README.md examples/README.md examples/python/README.md docs/python.md docs/security.md
      docs/operations.md docs/metrics.md"

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: a network namespace of its own (unshare -n) needs root"
    exit 77
fi
if ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
    echo "SKIP: unshare (util-linux) and ip (iproute2) are needed"
    exit 77
fi
if ! unshare -n true 2>/dev/null; then
    echo "SKIP: unshare -n is refused here (a container without CAP_SYS_ADMIN?)"
    exit 77
fi
#   A libherald built with --enable-sanitizers needs ASan loaded first in the
#   interpreter that dlopens it (as tests/python_binding/run.sh)
asan=$(ldd "$builddir/.libs/libherald.so.1" 2>/dev/null | awk '/libasan/ { print $3; exit }')
if [ -n "$asan" ]; then
    WALKTHROUGH_PRELOAD=$asan
    ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export WALKTHROUGH_PRELOAD ASAN_OPTIONS
fi
#   shellcheck disable=SC2086
exec unshare -n sh -c 'ip link set lo up && exec /usr/bin/python3 "$@"' walkthrough \
    "$srcdir/tests/walkthrough.py" "$srcdir" "$builddir" ${WALKTHROUGH_DOCS:-$docs}

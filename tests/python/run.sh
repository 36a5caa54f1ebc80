#!/bin/sh
#   run.sh - make check's conformance step: the HWP/1 suite in Python
#
#   Speaks raw ZeroMQ + MessagePack to a real heraldd, as a third-party
#   client would, with Debian's interpreter and its python3-pytest,
#   python3-zmq and python3-msgpack.  Runs from the source directory with
#   HERALD_BUILDDIR exported (conftest.py finds broker/heraldd there).
#   Exit status: pytest's.

srcdir=${HERALD_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${HERALD_BUILDDIR:-$(pwd)}
builddir=$(cd "$builddir" && pwd) || exit 99
HERALD_BUILDDIR=$builddir
export HERALD_BUILDDIR
cd "$srcdir" || exit 99
#   Nothing is written into the source tree: no bytecode, no .pytest_cache.
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python
exit $?

#!/bin/sh
#   run.sh - make check's fuzz step: each libFuzzer target for a few seconds
#
#   Runs from the build directory with HERALD_BUILDDIR and HERALD_SRCDIR set
#   (Makefile.am's TESTS_ENVIRONMENT).  Each target starts from a copy of
#   its seed corpus in a temporary directory, so nothing is ever written
#   into the source tree.  The directory is removed, except on a failure:
#   then its artifacts/ (the crashing input) is kept and its path printed, so
#   the crash can be replayed with `target <file>`.  FUZZ_SECONDS overrides
#   the time.
#   Exit status: 0 when every target ran clean, 1 otherwise.

builddir=${HERALD_BUILDDIR:-.}
srcdir=${HERALD_SRCDIR:-.}
seconds=${FUZZ_SECONDS:-10}
status=0

for target in fuzz_envelope fuzz_request fuzz_reply fuzz_entry fuzz_acl fuzz_exposition; do
    binary="$builddir/tests/fuzz/$target"
    seeds="$srcdir/tests/fuzz/corpus/$target"
    if [ ! -x "$binary" ]; then
        echo "$target: FAIL (not built: $binary)"
        status=1
        continue
    fi
    work=$(mktemp -d "${TMPDIR:-/tmp}/herald-$target.XXXXXX") || exit 1
    mkdir "$work/corpus" "$work/artifacts"
    [ -d "$seeds" ] && cp "$seeds"/* "$work/corpus/" 2>/dev/null
    if "$binary" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 \
            -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1; then
        runs=$(grep -o 'Done [0-9]* runs' "$work/log" | tail -1)
        echo "$target: ok (${runs:-ran} in ${seconds}s)"
    else
        echo "$target: FAIL (see below)"
        tail -40 "$work/log"
        ls "$work/artifacts" | sed "s|^|    kept: $work/artifacts/|"
        rm -rf "$work/corpus" "$work/log"
        status=1
        continue
    fi
    rm -rf "$work"
done
exit $status

#!/usr/bin/env bash
# Herald's test command: on a fresh Debian 12 machine (as root) it installs
# the missing Debian packages, builds in this tree, and runs every test
# (make check).  Re-running it is fast: it installs, configures and
# rebuilds only what is missing or changed.  The last line is the total of
# test cases across the suite; the exit status is non-zero on any failure.
#
#   ./test.sh              build and run every test
#   ./test.sh --sanitize   the same with ASan + UBSan, in build-asan/: a copy
#                          of the sources (refreshed on each run, so edit
#                          them here) built in place, beside this tree's build
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

build="$top"
configure_flags=()
herald_copy=""
case "${1:-}" in
    "") ;;
    --sanitize)
        build="$top/build-asan"
        configure_flags=(--enable-sanitizers)
        herald_copy=1 ;;
    -h|--help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0 ;;
    *)
        echo "test.sh: unknown argument '$1' (./test.sh or ./test.sh --sanitize)" >&2
        exit 64 ;;
esac

herald_build="$build"
herald_configure_flags=(${configure_flags[@]+"${configure_flags[@]}"})
source "$top/tools/setup.sh"
herald_setup
cd "$build"
jobs=$(nproc 2>/dev/null || echo 2)
status=0
make -j"$jobs" check || status=$?

# Sum the test cases: criterion's synthesis line in each test's log, the
# "N passed[, M failed]" of pytest and the shell tests, and one case for a
# test that prints neither (the fuzz run).
passed=0; failed=0
for trs in tests/*.trs tests/*/*.trs; do
    [ -f "$trs" ] || continue
    log="${trs%.trs}.log"
    synthesis=$(grep -ao 'Synthesis: Tested: [0-9]* | Passing: [0-9]* | Failing: [0-9]* | Crashing: [0-9]*' "$log" 2>/dev/null | tail -n 1 || true)
    if [ -n "$synthesis" ]; then
        read -r p f c < <(echo "$synthesis" | sed 's/.*Passing: \([0-9]*\) | Failing: \([0-9]*\) | Crashing: \([0-9]*\).*/\1 \2 \3/')
        passed=$((passed + p)); failed=$((failed + f + c))
        if grep -q ':test-result: FAIL\|:test-result: ERROR' "$trs" && [ $((f + c)) -eq 0 ]; then
            failed=$((failed + 1))          # the binary failed outside any case
        fi
    elif counts=$(grep -aoE '[0-9]+ passed' "$log" 2>/dev/null | tail -n 1) && [ -n "$counts" ]; then
        # pytest ("12 passed, 1 failed in 3.1s") and the shell tests
        # ("12 passed, 0 failed") print their own totals
        passed=$((passed + ${counts% passed}))
        f=$(grep -aoE '[0-9]+ failed' "$log" | tail -n 1 || true)
        failed=$((failed + ${f:+${f% failed}}+0))
        if grep -q ':test-result: FAIL\|:test-result: ERROR' "$trs" && [ -z "$f" ]; then
            failed=$((failed + 1))
        fi
    elif grep -q ':test-result: PASS' "$trs"; then
        passed=$((passed + 1))
    elif grep -q ':test-result: SKIP' "$trs"; then
        :
    else
        failed=$((failed + 1))
    fi
done
if [ "$status" -ne 0 ] && [ -f test-suite.log ]; then
    cat test-suite.log
fi
[ "$failed" -eq 0 ] || status=1
echo "herald: $passed passed, $failed failed"
exit "$status"

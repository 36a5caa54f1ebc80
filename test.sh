#!/usr/bin/env bash
# Herald's test command: on a fresh Debian 12 machine (as root) it installs
# the missing Debian packages, builds in this tree, and runs every test
# (make check).  Re-running it is fast: it installs, configures and
# rebuilds only what is missing or changed.  The last line is the total of
# test cases across the suite; the exit status is non-zero on any failure.
#
#   ./test.sh              build and run every test
#   ./test.sh --sanitize   the same in build-asan/, with ASan + UBSan
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

packages=(build-essential autoconf automake libtool pkg-config
          libmsgpack-dev librocksdb-dev libzmq3-dev libczmq-dev libcriterion-dev
          clang libclang-rt-14-dev)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

build="$top"
configure_flags=()
if [ "${1:-}" = "--sanitize" ]; then
    build="$top/build-asan"
    configure_flags=(--enable-sanitizers)
    if [ -f "$top/config.status" ]; then
        echo "test.sh: --sanitize builds in build-asan/, which needs a clean source tree;" >&2
        echo "         run 'make distclean' here first" >&2
        exit 2
    fi
fi

[ -x "$top/configure" ] || "$top/autogen.sh"
mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$top/configure" -q "${configure_flags[@]}"

jobs=$(nproc 2>/dev/null || echo 2)
make -j"$jobs" >/dev/null
status=0
make -j"$jobs" check || status=$?

# Sum the test cases: criterion's synthesis line in each test's log, and
# one case for each test that is not a criterion binary (the fuzz run).
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

#!/bin/sh
#   test_examples_cli - the example services' command lines: --help prints
#   the usage and exits 0 without touching anything (no agent, no state
#   directory, nothing published), a usage error exits 64 and says why, and
#   a service started where no broker answers says so on stderr at once
#   (within a few seconds) and keeps trying.  C and Python.

#   In a network namespace of its own where possible (root, unshare -n):
#   there, nothing else on the machine (another test's broker) can answer on
#   the port that must stay silent.
if [ -z "$EXAMPLES_CLI_NETNS" ] && [ "$(id -u)" = 0 ] && command -v ip >/dev/null \
   && unshare -n true 2>/dev/null; then
    EXAMPLES_CLI_NETNS=1
    export EXAMPLES_CLI_NETNS
    # shellcheck disable=SC2016
    exec unshare -n sh -c 'ip link set lo up && exec sh "$0"' "$0"
fi

srcdir=${HERALD_SRCDIR:-$(dirname "$0")/..}
srcdir=$(cd "$srcdir" && pwd) || exit 99
builddir=${HERALD_BUILDDIR:-$(pwd)}
builddir=$(cd "$builddir" && pwd) || exit 99
PYTHONPATH=$srcdir/bindings/python
HERALD_BUILDDIR=$builddir
PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH HERALD_BUILDDIR PYTHONDONTWRITEBYTECODE
work=$(mktemp -d) || exit 99
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 99
failed=0
fail () {
    echo "FAIL: $*"
    failed=1
}

orders="$builddir/examples/orders"
inventory="$builddir/examples/inventory"
#   A libherald built with sanitizers (./test.sh --sanitize) needs ASan
#   loaded first in the interpreter that dlopens it (as in
#   tests/python_binding/run.sh); Python's own allocations are not ours to
#   leak-check.  The C examples link it themselves.
asan=$(ldd "$builddir/.libs/libherald.so.1" 2>/dev/null | awk '/libasan/ { print $3; exit }')
py="/usr/bin/python3"
[ -z "$asan" ] || py="env LD_PRELOAD=$asan ASAN_OPTIONS=detect_leaks=0 /usr/bin/python3"
py_orders="$py $srcdir/examples/python/orders.py"
py_inventory="$py $srcdir/examples/python/inventory.py"

#   --help: usage on stdout, exit 0, no state directory made
for program in "$orders" "$inventory" "$py_orders" "$py_inventory"; do
    for flag in --help -h; do
        # shellcheck disable=SC2086
        timeout 20 $program $flag >out 2>err </dev/null
        rc=$?
        [ $rc = 0 ] || fail "$program $flag exited $rc"
        grep -qi usage out || fail "$program $flag printed no usage: $(cat out)"
        [ -e var ] && fail "$program $flag made a state directory ($(ls -R var))"
        rm -rf var
    done
done

#   Usage errors: exit 64, a message naming what is wrong, nothing made
check_usage () {
    expected=$1
    shift
    timeout 20 "$@" >out 2>err </dev/null
    rc=$?
    [ $rc = 64 ] || fail "$* exited $rc, not 64: $(cat out err)"
    grep -q -- "$expected" err || fail "$* did not say '$expected': $(cat err)"
    [ -e var ] && fail "$* made a state directory"
    rm -rf var
}
for program in "$orders" "$py_orders"; do
    # shellcheck disable=SC2086
    check_usage "--bogus" $program place o1 A7 2 --bogus
    # shellcheck disable=SC2086
    check_usage "place" $program place o1
    # shellcheck disable=SC2086
    check_usage "nonsense" $program nonsense
    # shellcheck disable=SC2086
    check_usage "--api" $program flush --api
done
for program in "$inventory" "$py_inventory"; do
    # shellcheck disable=SC2086
    check_usage "--bogus" $program --bogus
    # shellcheck disable=SC2086
    check_usage "--state" $program --state
done

#   No broker: said on stderr within 10 s, the service goes on (trying)
#   A port nobody listens on, below the ephemeral range: a connect to a
#   closed port in that range can meet itself (TCP simultaneous open)
port=$(/usr/bin/python3 -c '
import random, socket
for _ in range(100):
    port = random.randrange(20000, 30000)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    break
')
[ -n "$port" ] || exit 99
api="tcp://127.0.0.1:$port"
for program in "$inventory" "$orders watch" "$py_inventory" "$py_orders watch"; do
    #   A background command's redirections are made in the child: without
    #   the rm, the loop below could read the previous program's warning
    #   (same $api) before this one truncates err, and stop it at once.
    rm -rf var out err
    # shellcheck disable=SC2086
    $program --api "$api" >out 2>err &
    pid=$!
    tries=0
    while ! grep -q "no broker answers at $api" err && [ $tries -lt 100 ]; do
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
        tries=$((tries + 1))
    done
    grep -q "no broker answers at $api" err \
        || fail "$program against no broker said nothing in 10 s: $(cat out err) $(ps -o pid,stat,etime,wchan:30,cmd -p $pid; cat /proc/$pid/task/*/stat 2>/dev/null | cut -d' ' -f1-3)"
    kill -0 $pid 2>/dev/null || fail "$program exited instead of trying on"
    kill -TERM $pid 2>/dev/null
    tries=0
    while kill -0 $pid 2>/dev/null && [ $tries -lt 300 ]; do
        sleep 0.1
        tries=$((tries + 1))
    done
    if kill -0 $pid 2>/dev/null; then
        fail "$program did not stop on SIGTERM"
        kill -KILL $pid
    fi
    wait $pid
    rc=$?
    [ $rc = 0 ] || fail "$program exited $rc on SIGTERM: $(cat out err)"
done

[ $failed = 0 ] && echo "PASS: the examples' --help, usage errors and no-broker warning"
exit $failed

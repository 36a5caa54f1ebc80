#  =========================================================================
#  shtest.sh - what the shell tests share; sourced, after `set -u`
#
#      . "$(dirname "$0")/shtest.sh"
#      shtest_init NAME
#
#  shtest_init sets HERE (tests/), BUILD (the build tree: $HERALD_BUILDDIR
#  or HERE/..), HERALD and HERALDD (the programs, which must be built),
#  PY (Debian's python3), TMP (a fresh directory, named after NAME), the
#  counters `passed` and `failed`, and an EXIT trap that kills BROKER_PID
#  and every pid in PIDS, calls shtest_on_exit when the test defines one,
#  and removes TMP.  Every test prints "ok - ..." / "not ok - ..." per
#  check and ends with "N passed, M failed" (shtest_done).
#  =========================================================================

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${HERALD_BUILDDIR:-$HERE/..}
HERALD=$BUILD/tools/herald
HERALDD=$BUILD/broker/heraldd
PY=/usr/bin/python3

passed=0
failed=0
BROKER_PID=
PIDS=()
TMP=

shtest_cleanup () {
    local pid
    for pid in "${PIDS[@]}" $BROKER_PID; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if declare -F shtest_on_exit >/dev/null; then
        shtest_on_exit
    fi
    [ -z "$TMP" ] || rm -rf "$TMP"
}

#  shtest_init NAME: the temporary directory, the trap, the programs
shtest_init () {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 99
    trap shtest_cleanup EXIT
    local binary
    for binary in "$HERALD" "$HERALDD"; do
        if [ ! -x "$binary" ]; then
            echo "not ok - $binary is not built"
            echo "0 passed, 1 failed"
            exit 1
        fi
    done
}

ok () { passed=$((passed + 1)); echo "ok - $1"; }
not_ok () { failed=$((failed + 1)); echo "not ok - $1"; }

#  check DESCRIPTION COMMAND...: pass when COMMAND succeeds
check () {
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}

#  free_port: a TCP port free on 127.0.0.1 now, below the kernel's ephemeral
#  range (32768 and up), so that while a broker on it is down no connect's
#  source port takes it (not even a connect to that very port meeting
#  itself), and it can listen there again
free_port () {
    $PY -c 'import random, socket
for _ in range(200):
    port = random.randrange(20000, 32768)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    break
else:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now_ms () { date +%s%3N; }

#  wait_for SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds,
#  for at most SECONDS; then its status once more
wait_for () {
    local deadline=$(($(now_ms) + $1 * 1000))
    shift
    while [ "$(now_ms)" -lt "$deadline" ]; do
        if "$@"; then return 0; fi
        sleep 0.1
    done
    "$@"
}

#  shtest_cluster_ports: nine distinct free ports in PORTS (api, fanout and
#  Raft of three nodes) and the --peer flags of nodes c1..c3 in PEER_ARGS;
#  node k's api port is PORTS[3 * (k - 1)]
shtest_cluster_ports () {
    PORTS=()
    while [ ${#PORTS[@]} -lt 9 ]; do
        local port
        port=$(free_port)
        case " ${PORTS[*]} " in *" $port "*) ;; *) PORTS+=("$port") ;; esac
    done
    PEER_ARGS=()
    local k
    for k in 0 1 2; do
        PEER_ARGS+=(--peer "c$((k + 1)),127.0.0.1:${PORTS[$((3 * k + 2))]},tcp://127.0.0.1:${PORTS[$((3 * k))]},tcp://127.0.0.1:${PORTS[$((3 * k + 1))]}")
    done
}

#  shtest_cluster_start: shtest_cluster_ports, then nodes c1..c3 started
#  with --cluster-state new (data in TMP/cK, log TMP/cK.log; their pids in
#  PIDS, stopped by the cleanup)
shtest_cluster_start () {
    shtest_cluster_ports
    local k
    for k in 1 2 3; do
        "$HERALDD" --node "c$k" --data-dir "$TMP/c$k" "${PEER_ARGS[@]}" --cluster-state new \
            >>"$TMP/c$k.log" 2>&1 &
        PIDS+=($!)
    done
}

#  shtest_done: the totals line; exit 1 on any failure
shtest_done () {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

#!/bin/bash
#  =========================================================================
#  test_run_cluster - ./run.sh --cluster N (tools/run_cluster.sh, which
#  run.sh runs after its build): a local cluster a user can start, watch,
#  stop and start again
#
#  tools/run_cluster.sh is run directly, in a directory of its own, with
#  the built programs (HERALDD, HERALD) and a base port found free, so that
#  nothing is built and nothing collides.  Checked: usage errors exit 64
#  before anything starts; a port in use is named (which node, which port)
#  and nothing starts; a node that cannot start stops the others and
#  exits 1.  With a heraldd that has the cluster's flags: three nodes elect
#  a leader (herald cluster status exit 0), take an event, stop on SIGTERM
#  (exit 0, no heraldd left), start again as the same cluster (--cluster-
#  state existing, the event still there), go on when one node is killed,
#  and refuse to start the same data as another number of nodes.
#
#  Every wait is bounded; the EXIT trap stops what the test started.  The
#  last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init run_cluster

SRCDIR=${HERALD_SRCDIR:-$HERE/..}
RUN=$SRCDIR/tools/run_cluster.sh
export HERALDD HERALD
#  free_base N: a base port P with P+10 .. P+10N+2 free on 127.0.0.1
free_base () {
    $PY - "$1" <<'EOF'
import random, socket, sys
nodes = int(sys.argv[1])
for _ in range(200):
    base = random.randrange(20000, 60000, 100)
    ok = True
    for port in range(base + 10, base + 10 * nodes + 3):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            ok = False
        s.close()
        if not ok:
            break
    if ok:
        print(base)
        sys.exit(0)
sys.exit(1)
EOF
}

WORK=$TMP/work
mkdir -p "$WORK"
RUN_PID=

#  start_run LOG ARGS...: run_cluster.sh in WORK, in the background
start_run () {
    local log=$1
    shift
    (cd "$WORK" && exec "$RUN" "$@") >"$log" 2>&1 &
    RUN_PID=$!
    PIDS+=($RUN_PID)
}

#  stop_run: SIGTERM run_cluster.sh, wait up to 60 s; sets run_rc
stop_run () {
    kill -TERM "$RUN_PID" 2>/dev/null
    local deadline=$(($(now_ms) + 60000))
    while kill -0 "$RUN_PID" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do
        sleep 0.1
    done
    if kill -0 "$RUN_PID" 2>/dev/null; then
        run_rc=999
        return
    fi
    wait "$RUN_PID"
    run_rc=$?
}

BASE=$(free_base 3) || { not_ok "no free base port found"; shtest_done; }

#  ---------------------------------------------------------------------
#  Refusals before anything starts

(cd "$WORK" && "$RUN" --cluster 0) >"$TMP/out" 2>&1
check "--cluster 0: exit 64" test $? -eq 64
(cd "$WORK" && "$RUN" --cluster x) >"$TMP/out" 2>&1
check "--cluster x: exit 64, saying what to give" \
    sh -c "[ $? -eq 64 ] && grep -q 'give the number of nodes, 1 to 9' '$TMP/out'"
(cd "$WORK" && "$RUN" --cluster 3 --data-dir /tmp/x) >"$TMP/out" 2>&1
check "--data-dir with --cluster: exit 64 (run.sh sets it)" \
    sh -c "[ $? -eq 64 ] && grep -q 'sets it for each node itself' '$TMP/out'"
(cd "$WORK" && "$RUN" --cluster 3 --base-port 80) >"$TMP/out" 2>&1
check "--base-port 80: exit 64" test $? -eq 64
check "... nothing created" test ! -e "$WORK/var"

#  A port in use: node2's api
$PY - $((BASE + 20)) "$TMP/held" <<'EOF' &
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)
open(sys.argv[2], "w").close()
time.sleep(60)
EOF
HOLDER=$!
PIDS+=($HOLDER)
wait_for 10 test -e "$TMP/held"
(cd "$WORK" && "$RUN" --cluster 3 --base-port "$BASE") >"$TMP/out" 2>&1
check "a port in use: exit 1" test $? -eq 1
check "... naming the port and the node" grep -q "port $((BASE + 20)) (node2's api) is in use" "$TMP/out"
check "... and --base-port as the way out" grep -q -- "--base-port P" "$TMP/out"
check "... no node started (no node directory)" test ! -e "$WORK/var/cluster/node1"
kill -KILL "$HOLDER"; wait "$HOLDER" 2>/dev/null

#  A node that cannot start: every node refuses a bad option
(cd "$WORK" && timeout 60 "$RUN" --cluster 3 --base-port "$BASE" --log-level nonsense) \
    >"$TMP/out" 2>&1
check "nodes that cannot start: exit 1" test $? -eq 1
check "... each node's own line prefixed with its name" grep -q "^node[123] | heraldd: " "$TMP/out"
check "... saying a node exited before the cluster was up" \
    grep -q "exited (status 64) before the cluster was up" "$TMP/out"
#  (the nodes' command lines name this test's ports, found free for it)
OURS="--peer node1,127.0.0.1:$((BASE + 12)),"
no_node_left () { ! pgrep -f -- "$OURS" >/dev/null; }
check "... no heraldd left" no_node_left

#  ---------------------------------------------------------------------
#  A real cluster

if ! "$HERALDD" --help | grep -q -- "--peer"; then
    echo "# skip: this heraldd has no --peer (no cluster): the cluster's checks do not run"
    shtest_done
fi

ENDPOINTS="tcp://127.0.0.1:$((BASE + 10)),tcp://127.0.0.1:$((BASE + 20)),tcp://127.0.0.1:$((BASE + 30))"
cluster_ok () { "$HERALD" cluster status --endpoint "$ENDPOINTS" --timeout 1000 "$@"; }

start_run "$TMP/run1.log" --cluster 3 --base-port "$BASE"
wait_for 90 grep -q "the cluster is up" "$TMP/run1.log"
check "three nodes: the cluster is up (a leader elected)" grep -q "the cluster is up" "$TMP/run1.log"
check "... each started with --cluster-state new" \
    sh -c "[ \$(grep -c -- '(--cluster-state new)' '$TMP/run1.log') -eq 3 ]"
check "... the endpoint list printed for clients" \
    grep -q -- "herald --endpoint $ENDPOINTS" "$TMP/run1.log"
check "... each node's lines prefixed with its name" \
    sh -c "grep -q '^node1 | ' '$TMP/run1.log' && grep -q '^node2 | ' '$TMP/run1.log' \
        && grep -q '^node3 | ' '$TMP/run1.log'"
cluster_ok --format json >"$TMP/status.json" 2>"$TMP/status.err"
check "herald cluster status: exit 0 ($(head -c 300 "$TMP/status.err"))" test $? -eq 0
LEADER_API=$($PY -c 'import json,sys; o=json.load(open(sys.argv[1])); print([n["endpoint"] for n in o["nodes"] if n.get("role") == "leader"][0])' "$TMP/status.json" 2>/dev/null)
"$HERALD" --endpoint "$LEADER_API" pub run.cluster "first" >"$TMP/pub" 2>&1
check "an event published to the leader" test $? -eq 0
#  Every node applies it: the same head and digest everywhere
all_at_1 () {
    cluster_ok --format json >"$TMP/s.json" 2>/dev/null || return 1
    $PY -c 'import json,sys; o=json.load(open(sys.argv[1])); sys.exit(0 if all(n.get("head") == 1 for n in o["nodes"]) and len({n.get("digest") for n in o["nodes"]}) == 1 else 1)' "$TMP/s.json"
}
wait_for 20 all_at_1
check "... every node at head 1, one digest" all_at_1

#  The nodes, known by pid: the EXIT trap kills them if the test ends early
NODE_PIDS=$(pgrep -P "$RUN_PID" -x heraldd | tr '\n' ' ')
PIDS+=($NODE_PIDS)
check "three heraldd, children of run_cluster.sh ($NODE_PIDS)" test "$(echo $NODE_PIDS | wc -w)" -eq 3
stop_run
check "SIGTERM: run_cluster.sh exits 0 (got $run_rc)" test "$run_rc" -eq 0
check "... every node stopped" sh -c "for p in $NODE_PIDS; do kill -0 \$p 2>/dev/null && exit 1; done; exit 0"
check "... saying so" grep -q "every node stopped" "$TMP/run1.log"

#  The same data as another number of nodes
(cd "$WORK" && "$RUN" --cluster 5 --base-port "$BASE") >"$TMP/out" 2>&1
check "the same data as 5 nodes: exit 64, naming the cluster it holds" \
    sh -c "[ $? -eq 64 ] && grep -q 'holds a cluster of 3 nodes' '$TMP/out'"

#  Again: the same cluster
start_run "$TMP/run2.log" --cluster 3
wait_for 90 grep -q "the cluster is up" "$TMP/run2.log"
PIDS+=($(pgrep -P "$RUN_PID" -x heraldd))
check "started again (the base port remembered): up" grep -q "the cluster is up" "$TMP/run2.log"
check "... each node with --cluster-state existing" \
    sh -c "[ \$(grep -c -- '(--cluster-state existing)' '$TMP/run2.log') -eq 3 ]"
wait_for 20 all_at_1
check "... the event still there on every node, one digest" all_at_1

#  One node killed: reported, the others go on
VICTIM=$(pgrep -P "$RUN_PID" -f -- "--node node3" | head -n 1)
kill -KILL "$VICTIM"
wait_for 20 grep -q "node3 exited (status 137); the others go on" "$TMP/run2.log"
check "node3 killed: reported, the others go on" \
    grep -q "node3 exited (status 137); the others go on" "$TMP/run2.log"
wait_for 30 cluster_ok >/dev/null 2>&1
cluster_ok >"$TMP/out" 2>"$TMP/err"
check "... cluster status still exit 0 with two of three ($(head -c 200 "$TMP/err"))" test $? -eq 0
check "... naming node3 as not answering" grep -q "^herald: node3: nothing listens" "$TMP/err"
stop_run
check "SIGTERM with a node gone: exit 0 (got $run_rc)" test "$run_rc" -eq 0
check "... no heraldd left" no_node_left

#  Ctrl-C in a terminal: the terminal sends SIGINT to run_cluster.sh and
#  every node at once (one foreground process group), run through a pty
$PY - "$RUN" "$WORK" "$TMP/run3.log" <<'EOF'
import os, pty, select, sys, time
run, work, log = sys.argv[1:4]
pid, fd = pty.fork()
if pid == 0:
    os.chdir(work)
    os.execv(run, [run, "--cluster", "3"])
out = b""
def pump(seconds, until=None):
    global out
    end = time.time() + seconds
    while time.time() < end and not (until and until in out):
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return
            if not data:
                return
            out += data
pump(90, b"the cluster is up")
os.write(fd, b"\x03")
pump(60, b"every node stopped")
end = time.time() + 30
status = None
while time.time() < end and status is None:
    done, raw = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(raw)
    else:
        time.sleep(0.1)
if status is None:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
open(log, "wb").write(out + b"\nexit %s\n" % str(status).encode())
EOF
check "Ctrl-C in a terminal: the cluster was up" grep -q "the cluster is up" "$TMP/run3.log"
check "... every node stopped, exit 0" \
    sh -c "grep -q 'every node stopped' '$TMP/run3.log' && grep -q '^exit 0' '$TMP/run3.log'"
check "... no heraldd left" no_node_left

shtest_done

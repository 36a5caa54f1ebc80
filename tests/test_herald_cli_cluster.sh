#!/bin/bash
#  =========================================================================
#  test_herald_cli_cluster - `herald cluster status`: every node asked, in
#  bounded time, and the verdict on what they say
#
#  Against real heraldd processes on free ports: a standalone broker passes
#  (exit 0, role standalone), two standalone brokers are not one cluster
#  (exit 1), endpoints where nothing listens are named and, when none
#  answers, the exit is 2, said at once; endpoints that accept and never
#  answer cost one --timeout in all, not one each (they are asked at once).
#  A real 3-node cluster (heraldd --peer ...): two nodes of three started
#  are bootstrapping, with no leader (exit 1) and the third named from
#  their peers; all three elect one leader (exit 0), are found from one
#  endpoint, agree (one digest) at the same head after a publish; a
#  paused follower is named within one --timeout; after the leader is
#  killed, a new leader of a higher term, the dead one named.
#
#  The verdicts a healthy cluster never gives (two logs that differ at one
#  head, two leaders, no leader) come from scripted nodes: small ZeroMQ
#  ROUTERs in Python that answer STATUS with the map a test chooses, as
#  tests/fakebroker.c plays the broker for the agent's gap tests: real
#  nodes cannot be made to disagree on cue.
#
#  Every wait is bounded; the EXIT trap stops what the test started and
#  removes the temporary directory.  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_cli_cluster

SRCDIR=${HERALD_SRCDIR:-$HERE/..}
#  timed OUT ERR COMMAND...: run COMMAND, stdout to OUT and stderr to ERR;
#  set $rc and $ms (how long it took)
timed () {
    local out=$1 err=$2 start
    shift 2
    start=$(now_ms)
    "$@" >"$out" 2>"$err"
    rc=$?
    ms=$(($(now_ms) - start))
}

#  json_check FILE EXPRESSION: the JSON object in FILE, as `o`, makes the
#  Python EXPRESSION true
json_check () {
    $PY - "$1" "$2" <<'EOF'
import json, sys
try:
    o = json.load(open(sys.argv[1]))
except ValueError as e:
    print("#   not JSON: %s" % e)
    sys.exit(1)
ok = eval(sys.argv[2], {"o": o})
if not ok:
    print("#   %s is false for %s" % (sys.argv[2], json.dumps(o)[:600]))
sys.exit(0 if ok else 1)
EOF
}

#  standalone NAME: a heraldd on free ports; sets PORT_NAME (its api port)
standalone () {
    local api fanout
    api=$(free_port)
    fanout=$(free_port)
    while [ "$fanout" = "$api" ]; do fanout=$(free_port); done
    "$HERALDD" --data-dir "$TMP/$1" --node "$1" --api "tcp://127.0.0.1:$api" \
        --fanout "tcp://127.0.0.1:$fanout" >>"$TMP/$1.log" 2>&1 &
    PIDS+=($!)
    eval "PORT_$1=$api"
    wait_for 15 "$HERALD" --endpoint ":$api" --timeout 200 status >/dev/null 2>&1
}

#  The scripted node: answers every STATUS with the map given as JSON (its
#  rid added), until killed.  Writes its port to READY once bound.
cat >"$TMP/node.py" <<'EOF'
import json, sys
import msgpack, zmq
spec, ready = json.loads(sys.argv[1]), sys.argv[2]
context = zmq.Context()
router = context.socket(zmq.ROUTER)
port = router.bind_to_random_port("tcp://127.0.0.1")
with open(ready + ".tmp", "w") as f:
    f.write(str(port))
import os
os.rename(ready + ".tmp", ready)
while True:
    frames = router.recv_multipart()
    if len(frames) == 3 and frames[1] == b"STATUS":
        reply = dict(spec)
        reply["rid"] = msgpack.unpackb(frames[2])["rid"]
        router.send_multipart([frames[0], b"STATUS", msgpack.packb(reply)])
EOF

#  scripted NAME JSON: start a scripted node; sets PORT_NAME
scripted () {
    rm -f "$TMP/$1.port"
    $PY "$TMP/node.py" "$2" "$TMP/$1.port" 2>>"$TMP/$1.log" &
    PIDS+=($!)
    wait_for 10 test -s "$TMP/$1.port" || return 1
    eval "PORT_$1=$(cat "$TMP/$1.port")"
}

#  node_map NAME ROLE TERM HEAD DIGEST [PEERS_JSON]: a cluster node's STATUS
node_map () {
    local leader=$1
    [ "$2" = leader ] || leader=n1
    printf '{"head":%s,"topics":1,"events":%s,"role":"%s","node":"%s","uptime_s":5,'\
'"cluster_state":"member","term":%s,"leader":"%s","leader_api":null,"commit_index":%s,'\
'"applied_index":%s,"last_index":%s,"voters":3,"digest":"%s","durability":"raft-majority",'\
'"peers":%s}' "$4" "$4" "$2" "$1" "$3" "$leader" "$(($4 + 2))" "$(($4 + 2))" "$(($4 + 2))" \
        "$5" "${6:-[]}"
}

H=("$HERALD")
OUT=$TMP/out
ERR=$TMP/err

#  ---------------------------------------------------------------------
#  Usage

timed "$OUT" "$ERR" "${H[@]}" cluster
check "herald cluster (no subcommand) is a usage error (64)" test $rc -eq 64
timed "$OUT" "$ERR" "${H[@]}" cluster add n4
check "cluster add without its addresses: 64, saying what it takes" \
    sh -c "[ $rc -eq 64 ] && grep -q 'give NODE RAFT_ADDR API FANOUT' '$ERR'"
timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint ":1,,:2"
check "an empty item in the list is a usage error naming --endpoint" \
    sh -c "[ $rc -eq 64 ] && grep -q -- '--endpoint' '$ERR'"
timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint ":1,tcp://x"
check "a bad endpoint in the list is a usage error" test $rc -eq 64
timed "$OUT" "$ERR" "${H[@]}" help cluster
check "herald help cluster prints the command's help" \
    sh -c "[ $rc -eq 0 ] && grep -q 'usage: herald cluster status' '$OUT'"
timed "$OUT" "$ERR" "${H[@]}" --help
check "herald --help lists cluster status" grep -q "cluster status" "$OUT"

#  ---------------------------------------------------------------------
#  Nobody there

DEAD1=$(free_port)
DEAD2=$(free_port)
timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint ":$DEAD1,localhost:$DEAD2"
check "nothing listening anywhere: exit 2 (got $rc)" test $rc -eq 2
check "... at once, not after --timeout (took $ms ms)" test $ms -lt 2500
check "... naming each endpoint" sh -c "grep -q 'tcp://127.0.0.1:$DEAD1' '$ERR' \
    && grep -q 'tcp://localhost:$DEAD2' '$ERR' && grep -q 'no node answered (2 asked)' '$ERR'"

#  Endpoints that never answer, two kinds: three that accept connections
#  (the kernel takes them) and never speak ZeroMQ, and three whose accept
#  queue is full, so that a connection is never made: the SYN goes
#  unanswered, as with a host that is gone
$PY - "$TMP/silent.ports" <<'EOF' &
import os, socket, sys, time
mute, full, clients = [], [], []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    mute.append(s)
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    full.append(s)
    for _ in range(4):                  # fill the queue; later SYNs are dropped
        c = socket.socket()
        c.settimeout(0.2)
        try:
            c.connect(s.getsockname())
        except OSError:
            pass
        clients.append(c)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(" ".join(",".join(":%d" % s.getsockname()[1] for s in group) for group in (mute, full)))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
EOF
PIDS+=($!)
wait_for 10 test -s "$TMP/silent.ports"
read -r MUTE FULL <"$TMP/silent.ports"
timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint "$MUTE" --timeout 1000
check "three endpoints that accept and never answer: exit 2 (got $rc)" test $rc -eq 2
check "... within one --timeout of 1000 ms, not three (took $ms ms)" test $ms -lt 2500
check "... each named as not answering within the timeout" \
    sh -c "[ \$(grep -c 'did not answer within 1000 ms' '$ERR') -eq 3 ]"
timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint "$FULL,$MUTE" --timeout 1000
check "six endpoints, three where no connection is ever made: exit 2 (got $rc)" test $rc -eq 2
check "... still within one --timeout, the connects made at once (took $ms ms)" \
    test $ms -lt 2500
check "... those three named as making no connection" \
    sh -c "[ \$(grep -c 'no connection within 1000 ms' '$ERR') -eq 3 ]"

#  ---------------------------------------------------------------------
#  Standalone brokers

if standalone solo; then
    timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint ":$PORT_solo"
    check "one standalone broker: exit 0 (got $rc)" test $rc -eq 0
    check "... a table by default, its row saying standalone" \
        sh -c "grep -q '^NODE  *ROLE  *TERM  *LEADER  *COMMIT  *APPLIED  *HEAD  *LAG  *DIGEST  *ENDPOINT' '$OUT' \
            && grep -q '^solo  *standalone ' '$OUT'"
    check "... and a summary line" grep -q "1 of 1 node answered; a standalone broker" "$OUT"
    timed "$OUT" "$ERR" "${H[@]}" --format json cluster status --endpoint ":$PORT_solo"
    check "--format json: one object, ok, the node standalone with head 0" \
        json_check "$OUT" 'o["ok"] and o["answered"] == 1 and o["nodes"][0]["role"] == "standalone" and o["nodes"][0]["head"] == 0 and o["nodes"][0]["digest"] is None'

    timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint ":$PORT_solo,:$DEAD1" --format json
    check "a standalone broker and a dead endpoint: exit 0 (got $rc)" test $rc -eq 0
    check "... the dead one named on stderr" grep -q "nothing listens at tcp://127.0.0.1:$DEAD1" "$ERR"
    check "... and in the output, answered false" \
        json_check "$OUT" 'o["asked"] == 2 and o["answered"] == 1 and [n["answered"] for n in o["nodes"]] == [True, False] and "nothing listens" in o["nodes"][1]["error"]'

    if standalone other; then
        timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint ":$PORT_solo,:$PORT_other"
        check "two standalone brokers are not one cluster: exit 1 (got $rc)" test $rc -eq 1
        check "... saying so" grep -q "are standalone (not cluster members)" "$ERR"
    else
        not_ok "a second standalone broker starts"
    fi
else
    not_ok "a standalone broker starts ($(tail -n 3 "$TMP/solo.log"))"
fi

#  ---------------------------------------------------------------------
#  Scripted nodes: the verdicts

DIGEST=0123456789abcdef
OTHER=fedcba9876543210
scripted s2 "$(node_map n2 follower 5 10 $DIGEST)"
scripted s3 "$(node_map n3 follower 5 8 $OTHER)"
#  n4's port is held (bound, never listening: a connect is refused) so
#  that s1, started next on a port of the kernel's choosing, cannot get it:
#  with a plain free_port it once did, and n4 was taken for n1
$PY -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1], flush=True)
time.sleep(600)' >"$TMP/dead4.port" &
PIDS+=($!)
wait_for 10 test -s "$TMP/dead4.port"
DEAD4=$(cat "$TMP/dead4.port")
PEERS="[{\"node\":\"n1\",\"raft\":\"127.0.0.1:1\",\"api\":\"tcp://127.0.0.1:PORT1\",\"fanout\":\"tcp://127.0.0.1:1\"},
{\"node\":\"n2\",\"raft\":\"127.0.0.1:2\",\"api\":\"tcp://127.0.0.1:$PORT_s2\",\"fanout\":\"tcp://127.0.0.1:2\"},
{\"node\":\"n3\",\"raft\":\"127.0.0.1:3\",\"api\":\"tcp://127.0.0.1:$PORT_s3\",\"fanout\":\"tcp://127.0.0.1:3\"},
{\"node\":\"n4\",\"raft\":\"127.0.0.1:4\",\"api\":\"tcp://127.0.0.1:$DEAD4\",\"fanout\":\"tcp://127.0.0.1:4\"}]"
scripted s1 "$(node_map n1 leader 5 10 $DIGEST "$PEERS")"

timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint ":$PORT_s1" --format json
check "one leader, agreeing nodes: exit 0 (got $rc; $(head -c 300 "$ERR"))" test $rc -eq 0
check "... the members found from the one endpoint given (its peers)" \
    json_check "$OUT" '[n.get("node") for n in o["nodes"]] == ["n1", "n2", "n3", "n4"] and o["asked"] == 4 and o["answered"] == 3'
check "... leader n1 of term 5; lag 0, 0 and 2" \
    json_check "$OUT" 'o["leader"] == "n1" and o["term"] == 5 and [n.get("lag") for n in o["nodes"][:3]] == [0, 0, 2]'
check "... the member that did not answer named by its name" grep -q "^herald: n4: nothing listens" "$ERR"
timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint ":$PORT_s1"
check "... the table: n3 two behind, n4 without an answer" \
    sh -c "grep -Eq '^n3 +follower +5 +n1 +10 +10 +8 +2 +$OTHER ' '$OUT' \
        && grep -Eq '^n4 +\\(no answer\\) ' '$OUT' \
        && grep -q '3 of 4 nodes answered; leader n1 (term 5); no two nodes at the same head differ' '$OUT'"

#  The same head, another digest: two logs that differ
scripted s5 "$(node_map n5 follower 5 10 $OTHER)"
timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint ":$PORT_s1,:$PORT_s5" --format json
check "two nodes at head 10 with different digests: exit 1 (got $rc)" test $rc -eq 1
check "... saying they disagree, naming both and the head" \
    grep -q "nodes disagree: n1 and n5 are both at head 10 but their logs differ" "$ERR"
check "... agree false in the output" json_check "$OUT" 'not o["ok"] and not o["agree"]'
timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint ":$PORT_s1,:$PORT_s5"
check "... LOGS DIFFER in the table's summary" grep -q "LOGS DIFFER" "$OUT"

#  Without a leader, and with two
timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint ":$PORT_s2,:$PORT_s3"
check "followers only: exit 1, no leader (got $rc)" \
    sh -c "[ $rc -eq 1 ] && grep -q 'no leader' '$ERR'"
scripted s6 "$(node_map n6 leader 4 10 $DIGEST)"
timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint ":$PORT_s1,:$PORT_s6"
check "two nodes saying they lead: exit 1 (got $rc)" \
    sh -c "[ $rc -eq 1 ] && grep -q '2 nodes say they lead: n1 (term 5), n6 (term 4)' '$ERR'"

#  ---------------------------------------------------------------------
#  A real cluster of three nodes

if ! "$HERALDD" --help | grep -q -- "--peer"; then
    echo "# skip: this heraldd has no --peer (no cluster): the real cluster's checks do not run"
    shtest_done
fi

#  Nine distinct free ports: api, fanout and Raft of three nodes
shtest_cluster_ports
C1=":${PORTS[0]}"
CLUSTER="$C1,:${PORTS[3]},:${PORTS[6]}"
declare -A NODE_PID=()

#  node K: start cluster node cK (data in TMP/cK) with --cluster-state new
node () {
    "$HERALDD" --node "c$1" --data-dir "$TMP/c$1" "${PEER_ARGS[@]}" --cluster-state new \
        >>"$TMP/c$1.log" 2>&1 &
    NODE_PID[c$1]=$!
    PIDS+=($!)
}

#  status_json FILE [ARGS]: cluster status --format json of the cluster into FILE
status_json () {
    local file=$1
    shift
    "${H[@]}" cluster status --endpoint "$CLUSTER" --format json --timeout 1000 "$@" \
        >"$file" 2>"$file.err"
}

node 1
node 2
wait_for 15 sh -c "'$HERALD' cluster status --endpoint '$C1' --format json --timeout 500 \
    >'$TMP/boot.json' 2>/dev/null; grep -q bootstrapping '$TMP/boot.json'"
"${H[@]}" cluster status --endpoint "$C1" --format json --timeout 1000 >"$TMP/boot.json" \
    2>"$TMP/boot.err"
rc=$?
check "two of three nodes started (new): exit 1, no leader (got $rc)" \
    sh -c "[ $rc -eq 1 ] && grep -q 'no leader' '$TMP/boot.err'"
check "... both bootstrapping, the third found from their peers and named" \
    json_check "$TMP/boot.json" '[n.get("cluster_state") for n in o["nodes"]] == ["bootstrapping", "bootstrapping", None] and o["nodes"][2]["node"] == "c3" and not o["nodes"][2]["answered"]'
"${H[@]}" cluster status --endpoint "$C1" >"$OUT" 2>"$ERR"
check "... the table says bootstrapping" grep -Eq "^c1 +bootstrapping " "$OUT"

"${H[@]}" --endpoint "$C1" pub cluster.early x >"$OUT" 2>"$ERR"
rc=$?
check "PUBLISH while bootstrapping: exit 1, not_leader, leader unknown" \
    sh -c "[ $rc -eq 1 ] && grep -q '^herald: not_leader: .*(leader: unknown)$' '$ERR'"

node 3
one_leader () { status_json "$TMP/up.json"; }
wait_for 30 one_leader
check "three nodes: exit 0, one leader ($(head -c 300 "$TMP/up.json.err"))" one_leader
check "... every node a member of a 3-voter cluster, durability raft-majority, a 16-hex digest" \
    json_check "$TMP/up.json" 'o["answered"] == 3 and all(n["cluster_state"] == "member" and n["voters"] == 3 and n["durability"] == "raft-majority" and len(n["digest"]) == 16 and n["term"] >= 1 for n in o["nodes"])'
check "... the leader's name is what every node says leads" \
    json_check "$TMP/up.json" 'all(n["leader"] == o["leader"] for n in o["nodes"]) and o["term"] == max(n["term"] for n in o["nodes"])'
"${H[@]}" cluster status --endpoint "$C1" --format json --timeout 1000 >"$TMP/one.json" 2>/dev/null
check "... from one endpoint, all three found" json_check "$TMP/one.json" 'o["asked"] == 3 and o["answered"] == 3'

LEADER=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["leader"])' "$TMP/up.json")
LEADER_API=$($PY -c 'import json,sys; o=json.load(open(sys.argv[1])); print([n["endpoint"] for n in o["nodes"] if n["node"] == o["leader"]][0])' "$TMP/up.json")
"${H[@]}" --endpoint "$LEADER_API" pub cluster.load x --count 200 >/dev/null 2>"$TMP/pub.err"
check "200 events published to the leader $LEADER" test $? -eq 0
caught_up () {
    status_json "$TMP/caught.json" || return 1
    json_check "$TMP/caught.json" 'all(n["head"] == 200 and n["lag"] == 0 for n in o["nodes"]) and len({n["digest"] for n in o["nodes"]}) == 1' >/dev/null
}
wait_for 20 caught_up
check "... every node at head 200, lag 0, one digest" caught_up

#  herald status on a node prints its string, nil and array keys too (the
#  decoder keeps only numbers: they were missing before)
"${H[@]}" --endpoint "$C1" status >"$TMP/st.json" 2>"$ERR"
check "herald status of a node: its leader, cluster_state, digest, durability and peers" \
    json_check "$TMP/st.json" 'o["leader"] == "'"$LEADER"'" and o["cluster_state"] == "member" and len(o["digest"]) == 16 and o["durability"] == "raft-majority" and len(o["peers"]) == 3 and all("raft_id" in p for p in o["peers"]) and o["head"] == 200'
"${H[@]}" --endpoint "$C1" status --format table >"$OUT" 2>"$ERR"
check "... and in the table" sh -c "grep -Eq '^leader +$LEADER\$' '$OUT' && grep -Eq '^digest +[0-9a-f]{16}\$' '$OUT'"

#  A follower that stops answering (SIGSTOP): named, within one --timeout
FOLLOWER=$($PY -c 'import json,sys; o=json.load(open(sys.argv[1])); print([n["node"] for n in o["nodes"] if n["node"] != o["leader"]][0])' "$TMP/up.json")
kill -STOP "${NODE_PID[$FOLLOWER]}"
timed "$OUT" "$ERR" "${H[@]}" cluster status --endpoint "$CLUSTER" --timeout 1000
kill -CONT "${NODE_PID[$FOLLOWER]}"
check "a paused follower: still exit 0 (got $rc; $(head -c 200 "$ERR"))" test $rc -eq 0
check "... named as not answering within the timeout" \
    grep -q "^herald: $FOLLOWER: broker at .* did not answer within 1000 ms" "$ERR"
check "... in one --timeout (took $ms ms)" test $ms -lt 2500

#  The leader killed: a new leader of a higher term, the old one named
OLD_TERM=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["term"])' "$TMP/up.json")
kill -KILL "${NODE_PID[$LEADER]}"
wait "${NODE_PID[$LEADER]}" 2>/dev/null
new_leader () {
    status_json "$TMP/new.json"
    json_check "$TMP/new.json" "o['ok'] and o['leader'] != '$LEADER' and o['term'] > $OLD_TERM" >/dev/null
}
wait_for 30 new_leader
check "the leader killed: a new leader, of a higher term, exit 0" new_leader
check "... the killed leader named as not answering" grep -q "^herald: $LEADER: nothing listens" "$TMP/new.json.err"
check "... the two left agree at head 200" \
    json_check "$TMP/new.json" 'sorted(n["head"] for n in o["nodes"] if n["answered"]) == [200, 200] and len({n["digest"] for n in o["nodes"] if n["answered"]}) == 1'

shtest_done

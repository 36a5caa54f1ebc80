#!/bin/bash
#  =========================================================================
#  test_herald_archive_cluster - herald archive from the nodes of a real
#  3-node Raft cluster (issue 17)
#
#  The archive is written by a client over REPLAY, so any node serves it:
#  archives written from two different followers hold the same events, the
#  same bytes (their segments' file and ids digests are equal; only the
#  header's node differs), and replay as the leader replays; an archive
#  begun at one node continues at another (same lineage).  Skipped when
#  heraldd has no --peer.  Ports are free ones; every wait is bounded; the
#  EXIT trap kills every node.  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_archive_cluster

if ! "$HERALDD" --help | grep -q -- "--peer"; then
    echo "ok - # SKIP this heraldd has no --peer (no cluster)"
    shtest_done
fi

shtest_cluster_start
N1=127.0.0.1:${PORTS[0]}
N2=127.0.0.1:${PORTS[3]}
N3=127.0.0.1:${PORTS[6]}
CLUSTER="$N1,$N2,$N3"
leader () {
    "$HERALD" cluster status --endpoint "$CLUSTER" --format json --timeout 1000 \
        >"$TMP/status.json" 2>/dev/null
}
check "a 3-node cluster elects a leader" wait_for 30 leader
LEADER=$($PY -c 'import json,sys
o = json.load(open(sys.argv[1]))
print([n["endpoint"] for n in o["nodes"] if n["node"] == o["leader"]][0])' "$TMP/status.json")
#  the followers, in order
FOLLOWERS=()
for n in "$N1" "$N2" "$N3"; do
    [ "tcp://$n" = "$LEADER" ] || [ "$n" = "$LEADER" ] || FOLLOWERS+=("$n")
done
check "two followers known (leader $LEADER)" test ${#FOLLOWERS[@]} -eq 2
F1=${FOLLOWERS[0]}
F2=${FOLLOWERS[1]}

"$HERALD" --endpoint "$LEADER" pub orders.1 '{"order":1,"items":[1,2,3]}' --count 3000 \
    >/dev/null 2>&1
"$HERALD" --endpoint "$LEADER" pub stock.1 '{"delta":-1}' --count 1000 >/dev/null 2>&1
check "both followers applied the 4000 events" \
    wait_for 20 sh -c "[ \"\$('$HERALD' --endpoint $F1 --timeout 1000 status --format json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"head\"])')\" = 4000 ] && [ \"\$('$HERALD' --endpoint $F2 --timeout 1000 status --format json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"head\"])')\" = 4000 ]"

"$HERALD" --endpoint "$F1" archive --until-seq 4000 --to "$TMP/a1" --segment-events 1500 \
    >"$TMP/out" 2>&1
check "archive from follower 1" grep -q "archived seq 1..4000 " "$TMP/out"
"$HERALD" --endpoint "$F2" archive --until-seq 4000 --to "$TMP/a2" --segment-events 1500 \
    >"$TMP/out" 2>&1
check "archive from follower 2" grep -q "archived seq 1..4000 " "$TMP/out"
check "the two archives verify" sh -c "'$HERALD' archive verify '$TMP/a1' >/dev/null && '$HERALD' archive verify '$TMP/a2' >/dev/null"
check "their indexes are the same (file and ids digests of every segment)" \
    cmp -s "$TMP/a1/index.hwa" "$TMP/a2/index.hwa"
"$HERALD" --endpoint "$LEADER" replay --format json >"$TMP/leader.json"
"$HERALD" replay --archive "$TMP/a1" --format json >"$TMP/a1.json"
check "replay --archive equals the leader's replay" cmp -s "$TMP/leader.json" "$TMP/a1.json"

"$HERALD" --endpoint "$F1" archive --until-seq 2000 --to "$TMP/a3" >/dev/null 2>&1
"$HERALD" --endpoint "$F2" archive --until-seq 4000 --to "$TMP/a3" >"$TMP/out" 2>&1
check "an archive begun at one node continues at another" grep -q "archived seq 2001..4000 " \
    "$TMP/out"
"$HERALD" replay --archive "$TMP/a3" --format json >"$TMP/a3.json"
check "  and replays as the leader does" cmp -s "$TMP/leader.json" "$TMP/a3.json"

shtest_done

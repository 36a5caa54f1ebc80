#!/bin/bash
#  =========================================================================
#  test_herald_trim_cluster - herald trim against a real 3-node Raft
#  cluster (issue 17)
#
#  An archive written from a follower proves the trim: herald trim sent
#  to a follower is refused with not_leader naming the leader (nothing
#  trimmed); sent to the leader it trims every node at the same point
#  (STATUS first and trims equal on the three); a follower refuses a
#  REPLAY of the trimmed range (exit 1, its first), a retry of a trimmed
#  id at the leader is a duplicate with its seq, and replay --archive
#  --continue from a follower prints the log as it was.  Skipped when
#  heraldd has no --peer.  Ports are free ones; every wait is bounded; the
#  EXIT trap kills every node.  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_trim_cluster

if ! "$HERALDD" --help | grep -q -- "--peer"; then
    echo "ok - # SKIP this heraldd has no --peer (no cluster)"
    shtest_done
fi

shtest_cluster_start
N1=127.0.0.1:${PORTS[0]}
N2=127.0.0.1:${PORTS[3]}
N3=127.0.0.1:${PORTS[6]}
CLUSTER="$N1,$N2,$N3"
#  trims_of NODE: its STATUS first and trim points, "first|prefix:until,..."
trims_of () {
    "$HERALD" --endpoint "$1" --timeout 1000 status 2>/dev/null | $PY -c 'import json,sys
s = json.load(sys.stdin)
print("%s|%s" % (s.get("first"), ",".join("%s:%s" % (t["prefix"], t["until"])
                                          for t in s.get("trims", []))))'
}
export -f trims_of
export HERALD PY
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

ID=01939a00-0000-7000-8000-0000000000c1
"$HERALD" --endpoint "$LEADER" pub orders.1 '{"order":0}' --id $ID >/dev/null 2>&1
"$HERALD" --endpoint "$LEADER" pub orders.1 '{"order":1,"items":[1,2,3]}' --count 2999 \
    >/dev/null 2>&1
"$HERALD" --endpoint "$LEADER" pub stock.1 '{"delta":-1}' --count 1000 >/dev/null 2>&1
check "both followers applied the 4000 events" \
    wait_for 20 sh -c "[ \"\$('$HERALD' --endpoint $F1 --timeout 1000 status --format json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"head\"])')\" = 4000 ] && [ \"\$('$HERALD' --endpoint $F2 --timeout 1000 status --format json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"head\"])')\" = 4000 ]"

"$HERALD" --endpoint "$F1" replay >"$TMP/before.json" 2>/dev/null
"$HERALD" --endpoint "$F1" archive --until-seq 3000 --to "$TMP/a" >"$TMP/out" 2>&1
check "archive 1..3000 from follower 1" grep -q "archived seq 1..3000 " "$TMP/out"

"$HERALD" --endpoint "$F2" trim --archive "$TMP/a" >"$TMP/out" 2>"$TMP/err"
rc=$?
check "trim sent to a follower: exit 1, not_leader naming the leader" \
    bash -c "[ $rc -eq 1 ] && grep -q '^herald: not_leader: .*(leader: ' '$TMP/err'"
check "  nothing trimmed" test "$(trims_of "$LEADER")" = "1|"

"$HERALD" --endpoint "$LEADER" trim --archive "$TMP/a" >"$TMP/out" 2>"$TMP/err"
check "trim --archive (written from a follower) at the leader: first 3001" \
    grep -q '"until":3000,"first":3001' "$TMP/out"
for n in "$N1" "$N2" "$N3"; do
    check "  node $n: first 3001, trim point '':3000" wait_for 20 \
        bash -c "[ \"\$(trims_of $n)\" = '3001|:3000' ]"
done 2>/dev/null
"$HERALD" --endpoint "$F2" replay >"$TMP/out" 2>"$TMP/err"
rc=$?
check "a follower refuses a REPLAY of the trimmed range: exit 1, first 3001" \
    bash -c "[ $rc -eq 1 ] && grep -q 'is 3001 (herald replay --from 3001)' '$TMP/err'"
out=$("$HERALD" --endpoint "$LEADER" pub orders.1 '{"order":0}' --id $ID 2>&1)
check "a retry of a trimmed id at the leader is a duplicate with seq 1" \
    bash -c "[[ '$out' == *'\"seq\":1,\"ver\":1,\"dup\":true'* ]]"
"$HERALD" replay --archive "$TMP/a" --continue --endpoint "$F1" >"$TMP/all.json" 2>"$TMP/err"
check "replay --archive --continue from a follower is the log as it was" \
    cmp -s "$TMP/before.json" "$TMP/all.json"

shtest_done

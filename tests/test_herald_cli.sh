#!/bin/bash
#  =========================================================================
#  test_herald_cli - the `herald` command-line client against a real heraldd
#
#  Starts broker/heraldd on free ports with a temporary data directory,
#  drives it with tools/herald (pub, replay, read, tail, status, the expect
#  conflict, a broker that does not answer), stops it with SIGTERM and runs
#  `herald inspect` on its data directory.  Binaries come from
#  $HERALD_BUILDDIR (set by make check) or from this script's ../ directory.
#  Every wait is bounded; the EXIT trap kills the broker and removes the
#  temporary directory.  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_cli

#  json_check FILE EXPR: every line of FILE is a JSON object, and EXPR (a
#  Python expression over `rows`, the parsed lines) is true
json_check () {
    $PY - "$1" "$2" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
sys.exit(0 if all(isinstance(r, dict) for r in rows) and eval("(" + sys.argv[2] + ")") else 1)
EOF
}

API_PORT=$(free_port)
FANOUT_PORT=$(free_port)
while [ "$FANOUT_PORT" = "$API_PORT" ]; do FANOUT_PORT=$(free_port); done
API=tcp://127.0.0.1:$API_PORT
FANOUT=tcp://127.0.0.1:$FANOUT_PORT
DATA=$TMP/data
H=("$HERALD" --endpoint "$API")

"$HERALDD" --data-dir "$DATA" --api "$API" --fanout "$FANOUT" >"$TMP/heraldd.log" 2>&1 &
BROKER_PID=$!

#  Ready when STATUS answers (at most ~10 s)
ready=false
for _ in $(seq 1 100); do
    if "${H[@]}" --timeout 200 status >/dev/null 2>&1; then ready=true; break; fi
    sleep 0.1
done
if ! $ready; then
    echo "not ok - heraldd did not answer STATUS; its log:"
    sed 's/^/#   /' "$TMP/heraldd.log"
    echo "0 passed, 1 failed"
    exit 1
fi
ok "heraldd answers herald status"

#  ---------------------------------------------------------------------
#  help

check "herald --help" "$HERALD" --help >/dev/null
for command in pub tail replay read status inspect repair; do
    check "herald $command --help" "$HERALD" "$command" --help >/dev/null
done
"$HERALD" frobnicate >/dev/null 2>&1
check "an unknown command exits 64" test $? -eq 64

#  ---------------------------------------------------------------------
#  pub

"${H[@]}" pub orders.eu 'hello "world"' --type OrderPlaced --meta region=eu >"$TMP/pub1" 2>&1
check "pub TOPIC DATA exits 0" test $? -eq 0
check "pub TOPIC DATA acks seq 1 ver 1" \
    json_check "$TMP/pub1" 'len(rows) == 1 and rows[0]["seq"] == 1 and rows[0]["ver"] == 1 and rows[0]["dup"] is False'

printf 'one\ntwo\nthree\n' | "${H[@]}" pub orders.us >"$TMP/pub2" 2>&1
check "pub from stdin exits 0" test $? -eq 0
check "pub from stdin publishes one event per line" \
    json_check "$TMP/pub2" '[r["seq"] for r in rows] == [2, 3, 4] and [r["ver"] for r in rows] == [1, 2, 3]'

"${H[@]}" pub load.test --count 1000 >"$TMP/pub3" 2>"$TMP/pub3.err"
check "pub --count 1000 exits 0" test $? -eq 0
check "pub --count 1000 reports 1000 events and a rate" \
    json_check "$TMP/pub3" 'len(rows) == 1 and rows[0]["events"] == 1000 and rows[0]["events_per_s"] > 0'
check "pub --count shows progress on stderr" grep -q "published 1000/1000" "$TMP/pub3.err"

printf 'a\x00\xff' >"$TMP/binary"
"${H[@]}" pub bin.data "$(printf 'tab\there')" >/dev/null 2>&1
"${H[@]}" pub bin.data <"$TMP/binary" >/dev/null 2>&1
check "pub binary data exits 0" test $? -eq 0
TOTAL=1006

#  ---------------------------------------------------------------------
#  replay, read

"${H[@]}" replay >"$TMP/replay" 2>&1
check "replay exits 0 at END" test $? -eq 0
check "replay prints every event, one line each" test "$(wc -l <"$TMP/replay")" -eq $TOTAL
check "replay lines carry every envelope field, in seq order" json_check "$TMP/replay" \
    "all(set(r) >= {'seq','ver','ts','topic','id','type','schema','meta'} and ('data' in r or 'data_b64' in r) for r in rows)
     and [r['seq'] for r in rows] == list(range(1, $TOTAL + 1))"
check "replay shows the first event as published" json_check "$TMP/replay" \
    "rows[0]['topic'] == 'orders.eu' and rows[0]['data'] == 'hello \"world\"' and rows[0]['type'] == 'OrderPlaced'
     and rows[0]['meta'] == {'region': 'eu'} and rows[0]['schema'] == 1 and len(rows[0]['id']) == 36"
check "replay escapes control characters and base64s binary data" json_check "$TMP/replay" \
    "rows[-2]['data'] == 'tab\there' and rows[-1]['data_b64'] == 'YQD/' and 'data' not in rows[-1]"

"${H[@]}" replay --prefix orders. --from 2 --to 3 >"$TMP/replay2" 2>&1
check "replay --prefix --from --to selects" json_check "$TMP/replay2" '[r["seq"] for r in rows] == [2, 3]'

"${H[@]}" read orders.us >"$TMP/read" 2>&1
check "read exits 0" test $? -eq 0
check "read prints the topic in ver order" json_check "$TMP/read" \
    '[r["ver"] for r in rows] == [1, 2, 3] and [r["data"] for r in rows] == ["one", "two", "three"]'
"${H[@]}" read orders.us --from-ver 2 --to-ver 2 >"$TMP/read2" 2>&1
check "read --from-ver --to-ver" json_check "$TMP/read2" '[r["ver"] for r in rows] == [2]'

"${H[@]}" --format table replay --to 2 >"$TMP/table" 2>&1
check "--format table prints a header and rows" test "$(wc -l <"$TMP/table")" -eq 3

#  ---------------------------------------------------------------------
#  tail

timeout 30 "${H[@]}" tail --from 1 --max 10 >"$TMP/tail" 2>&1
check "tail --from 1 --max 10 exits 0" test $? -eq 0
check "tail --from 1 --max 10 prints seq 1..10" \
    json_check "$TMP/tail" '[r["seq"] for r in rows] == list(range(1, 11))'

#  Catch up and go live while a load runs: every event once, in order
"${H[@]}" pub live.load --count 3000 --batch 50 --window 2 >/dev/null 2>&1 &
LOAD_PID=$!
timeout 60 "${H[@]}" tail --from 1 --max $((TOTAL + 3000)) >"$TMP/tail2" 2>&1
tail_rc=$?
wait $LOAD_PID
check "tail --from 1 during a load exits 0" test $tail_rc -eq 0
check "tail --from 1 during a load has no gap and no duplicate" \
    json_check "$TMP/tail2" "[r['seq'] for r in rows] == list(range(1, $TOTAL + 3001))"
TOTAL=$((TOTAL + 3000))

#  Live only, with a prefix: starts, then sees the events published after
timeout 30 "${H[@]}" tail live.only. --max 2 >"$TMP/tail3" 2>&1 &
TAIL_PID=$!
sleep 1.5
"${H[@]}" pub live.only.a first >/dev/null 2>&1
"${H[@]}" pub other.topic skipped >/dev/null 2>&1
"${H[@]}" pub live.only.b second >/dev/null 2>&1
wait $TAIL_PID
check "tail PREFIX --max 2 exits 0" test $? -eq 0
check "tail PREFIX prints only matching live events" \
    json_check "$TMP/tail3" '[r["data"] for r in rows] == ["first", "second"]'
TOTAL=$((TOTAL + 3))

#  ---------------------------------------------------------------------
#  status, errors

"${H[@]}" status >"$TMP/status" 2>&1
check "status prints head, topics and events" \
    json_check "$TMP/status" "rows[0]['head'] == $TOTAL and rows[0]['events'] == $TOTAL and rows[0]['role'] == 'standalone'"

"${H[@]}" pub orders.eu again --expect 0 >"$TMP/conflict" 2>&1
check "pub --expect on a stale version exits non-zero" test $? -ne 0
check "the conflict is printed as herald: conflict: ..." grep -q "^herald: conflict:" "$TMP/conflict"
"${H[@]}" pub orders.eu again --expect 1 >/dev/null 2>&1
check "pub --expect on the current version succeeds" test $? -eq 0
TOTAL=$((TOTAL + 1))

"$HERALD" --endpoint "tcp://127.0.0.1:$(free_port)" --timeout 300 status >"$TMP/silent" 2>&1
check "a port where nothing listens exits 2" test $? -eq 2
check "... saying nothing listens there" grep -q "nothing listens at" "$TMP/silent"

"$HERALD" inspect --data-dir "$DATA" >"$TMP/locked" 2>&1
check "inspect refuses the data dir of a running broker" test $? -ne 0
check "... saying it is in use" grep -q "in use" "$TMP/locked"

#  ---------------------------------------------------------------------
#  inspect, offline

kill -TERM "$BROKER_PID"
stopped=false
for _ in $(seq 1 100); do
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then stopped=true; break; fi
    sleep 0.1
done
wait "$BROKER_PID" 2>/dev/null
BROKER_PID=
check "heraldd stops on SIGTERM" $stopped

"$HERALD" inspect --data-dir "$DATA" >"$TMP/inspect" 2>&1
check "inspect of the data dir exits 0" test $? -eq 0
check "inspect counts every event" \
    json_check "$TMP/inspect" "rows[0]['consistent'] and rows[0]['events'] == $TOTAL and rows[0]['head'] == $TOTAL"
check "inspect counts one id per event" json_check "$TMP/inspect" "rows[0]['ids'] == $TOTAL"

#  ---------------------------------------------------------------------
#  inspect, a damaged store: tests/store_tamper deletes one RocksDB record
#  from a copy of the data dir, leaving the rest as it was

TAMPER=$BUILD/tests/store_tamper

#  hex TEXT: TEXT's bytes in lower-case hex
hex () { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }

#  damaged NAME CF KEYHEX: a copy of the data dir without that key, at
#  $TMP/NAME; fails when the key was not there
damaged () {
    rm -rf "$TMP/$1"
    cp -r "$DATA" "$TMP/$1" && "$TAMPER" "$TMP/$1" "$2" "$3"
}

#  A run of live.load's topic index ("streams": topic 0x00 first_ver) that
#  is neither its first nor its last: the log still holds those events,
#  but reading the topic's stream cannot find them
run=$("$TAMPER" "$DATA" streams | grep "^$(hex live.load)00" | sed -n 2p)
check "the store has a second streams run for live.load" test -n "$run"
damaged no-stream-run streams "$run"
check "a streams run can be deleted" test $? -eq 0
"$HERALD" inspect --data-dir "$TMP/no-stream-run" >"$TMP/inspect-streams" 2>&1
check "inspect of a store missing a streams run exits 1" test $? -eq 1
check "... naming the topic" grep -q "topic 'live.load'" "$TMP/inspect-streams"

#  A topic's record in "topics": the store counts one topic fewer than the
#  log holds
damaged no-topic topics "$(hex orders.us)"
check "a topics record can be deleted" test $? -eq 0
"$HERALD" inspect --data-dir "$TMP/no-topic" >"$TMP/inspect-topics" 2>&1
check "inspect of a store missing a topic record exits 1" test $? -eq 1
check "... saying the topic counts differ" grep -q "topics, the log holds" "$TMP/inspect-topics"

#  A run of the log itself ("events": last_seq): a seq gap
run=$("$TAMPER" "$DATA" events | sed -n 2p)
damaged no-event-run events "$run"
check "an events run can be deleted" test $? -eq 0
"$HERALD" inspect --data-dir "$TMP/no-event-run" >"$TMP/inspect-events" 2>&1
check "inspect of a log with a hole exits 1" test $? -eq 1
check "... naming the seq gap" grep -q "seq gap" "$TMP/inspect-events"

#  The dedup index ("ids": the 16-byte id) without the first event's id:
#  the log is intact, but a retry of that event would be stored again
first_id=$($PY -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["id"])' "$TMP/replay")
damaged no-id ids "$(printf '%s' "$first_id" | tr -d -)"
check "an ids record can be deleted" test $? -eq 0
"$HERALD" inspect --data-dir "$TMP/no-id" >"$TMP/inspect-ids" 2>&1
check "inspect of a store missing an id exits 1" test $? -eq 1
check "... naming the dedup index, the seq and the id" \
    grep -q "dedup index: seq 1: its id $first_id is missing (1 event in all" "$TMP/inspect-ids"

#  The log's last run gone ("events": the greatest last_seq): the log is
#  gapless but shorter, and only the dedup index still names the lost seqs
run=$("$TAMPER" "$DATA" events | tail -n 1)
damaged no-tail events "$run"
check "the last events run can be deleted" test $? -eq 0
"$HERALD" inspect --data-dir "$TMP/no-tail" >"$TMP/inspect-tail" 2>&1
check "inspect of a log that lost its tail exits 1" test $? -eq 1
#  (when the broker lived a second after its last publish, HERALD-ACKED
#  names the head, and that is the first problem found)
check "... saying the acknowledged head is gone, or the dedup index names seqs past the head" \
    grep -qE "dedup index: it holds $TOTAL entries, the log [0-9]* events; the first stray: id .* past the head|the log ends at seq [0-9]* but seq $TOTAL had been acknowledged" "$TMP/inspect-tail"

"$HERALD" inspect --data-dir "$DATA" >/dev/null 2>&1
check "the original data dir is still consistent" test $? -eq 0

mkdir "$TMP/notastore"
echo hello >"$TMP/notastore/file"
"$HERALD" inspect --data-dir "$TMP/notastore" >/dev/null 2>&1
check "inspect of a directory that is not a store exits non-zero" test $? -ne 0
"$HERALD" inspect --data-dir "$TMP/missing" >/dev/null 2>&1
check "inspect of a missing directory exits non-zero" test $? -ne 0
check "... and does not create it" test ! -e "$TMP/missing"

shtest_done

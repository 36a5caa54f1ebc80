#!/bin/bash
#  =========================================================================
#  test_herald_trim - herald trim against a real heraldd and a real archive
#  (issue 17: trimming the live log)
#
#  The chain: events with known ids on several topics -> herald archive ->
#  herald trim --archive -> a publish retrying a trimmed id is a duplicate
#  with its original seq and ver -> herald replay --archive --continue is
#  byte for byte the herald replay of the log taken before the trim ->
#  replay, read and tail of the trimmed range exit 1 naming the first seq
#  (ver) still there.  Refusals that leave the log untouched (STATUS first
#  and trims, and the whole replay, unchanged): an archive of another
#  broker's store (the broker's digest differs), a damaged segment, an
#  archive that ends before N, a bad prefix, --dry-run.  A prefix trim
#  trims that prefix only.  --until-ts resolves to the last archived seq
#  at or before T (with an archive) or to the seq before the prefix's
#  first event after T (unarchived, dry run).  kill -9 of the broker right
#  after a trim: restarted, it is still trimmed; a second round (more
#  events, archive, trim) moves first on and the archive still reads as
#  the log.  An unarchived trim past the archive makes replay --archive
#  --continue refuse, printing nothing, naming the missing seqs, and the
#  next archive run refuse.  An archive that starts after the log's first
#  seq is refused.  A trim applied while a replay runs stops it after the
#  events before the trim point (exit 1, no hole).
#
#  Ports are free ones; every wait is a bounded poll; the EXIT trap kills
#  what the test started.  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_trim

API=tcp://127.0.0.1:$(free_port)
FANOUT=tcp://127.0.0.1:$(free_port)
while [ "$FANOUT" = "$API" ]; do FANOUT=tcp://127.0.0.1:$(free_port); done
H=("$HERALD" --endpoint "$API" --timeout 3000)
A=$TMP/arc

#  start_broker DATA API FANOUT: heraldd there, up when STATUS answers
start_broker () {
    "$HERALDD" --data-dir "$1" --api "$2" --fanout "$3" >>"$TMP/heraldd.log" 2>&1 &
    BROKER_PID=$!
    local _
    for _ in $(seq 1 100); do
        "$HERALD" --endpoint "$2" --timeout 200 status >/dev/null 2>&1 && return 0
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "not ok - heraldd did not answer STATUS; its log:"
    sed 's/^/#   /' "$TMP/heraldd.log"
    echo "$passed passed, $((failed + 1)) failed"
    exit 1
}

stop_broker () {
    kill -TERM "$BROKER_PID" 2>/dev/null
    wait "$BROKER_PID" 2>/dev/null
    BROKER_PID=
}

#  key JSON-FILE KEY: a key of the first JSON line of a file
key () {
    $PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$1" "$2"
}

#  trim_state: STATUS first and trims, as "first|prefix:until,..."
trim_state () {
    "${H[@]}" status | $PY -c 'import json,sys
s = json.load(sys.stdin)
print("%s|%s" % (s.get("first"), ",".join("%s:%s" % (t["prefix"], t["until"])
                                          for t in s.get("trims", []))))'
}

#  untouched WHAT: the log is as it was before any trim
untouched () {
    local state
    state=$(trim_state)
    "${H[@]}" replay >"$TMP/now.json" 2>/dev/null
    if [ "$state" = "1|" ] && cmp -s "$TMP/before.json" "$TMP/now.json"; then
        ok "$1: the log is untouched (first 1, no trim point, the same replay)"
    else
        not_ok "$1: the log changed: $state"
    fi
}

start_broker "$TMP/data" "$API" "$FANOUT"

#  ---------------------------------------------------------------------
#  Events with known ids on several topics

ID1=01939a00-0000-7000-8000-000000000001
ID2=01939a00-0000-7000-8000-000000000002
ID3=01939a00-0000-7000-8000-000000000003
"${H[@]}" pub orders.eu '{"order":1}' --id $ID1 --type order.placed >/dev/null 2>&1
"${H[@]}" pub stock.sku1 '{"delta":-2}' --id $ID2 >/dev/null 2>&1
"${H[@]}" pub orders.us '{"order":3}' --id $ID3 --meta source=web >/dev/null 2>&1
payload='{"order":"A-1029384","customer":"c-48213","items":[{"sku":"SKU-1","qty":2}],"currency":"EUR"}'
"${H[@]}" pub orders.eu "$payload" --count 1200 --type order.placed --meta source=web \
    >/dev/null 2>&1
"${H[@]}" pub stock.sku1 '{"delta":-2}' --count 500 >/dev/null 2>&1
"${H[@]}" pub orders.us "$payload" --count 1297 --batch 10 >/dev/null 2>&1
check "3000 events published, never trimmed" test "$("${H[@]}" status | $PY -c 'import json,sys
s = json.load(sys.stdin); print(s["head"], s.get("first"), s.get("trims"))')" = "3000 1 []"
"${H[@]}" replay >"$TMP/before.json"
"${H[@]}" replay --format table >"$TMP/before.table"
check "the replay before: 3000 events" test "$(wc -l <"$TMP/before.json")" -eq 3000

"${H[@]}" archive --until-seq 2000 --to "$A" --segment-events 700 >"$TMP/out" 2>&1
check "archive to seq 2000 (3 segments)" grep -q "archived seq 1..2000 (2000 events, 3 segments" \
    "$TMP/out"

#  ---------------------------------------------------------------------
#  The proof: the digest the tool sends is the ids' BLAKE2b-256

"${H[@]}" trim --archive "$A" --until-seq 1000 --dry-run >"$TMP/dry.json" 2>"$TMP/err"
check "--dry-run exits 0" test $? -eq 0
want=$(head -1000 "$TMP/before.json" | $PY -c 'import hashlib, json, sys, uuid
h = hashlib.blake2b(digest_size=32)
for line in sys.stdin:
    h.update(uuid.UUID(json.loads(line)["id"]).bytes)
print(h.hexdigest())')
check "  its ids digest is the BLAKE2b-256 of the ids of seqs 1..1000" \
    test "$(key "$TMP/dry.json" ids)" = "$want"
check "  from 1 to 1000, 2 segments checked" test "$(key "$TMP/dry.json" ids_from):$(key \
    "$TMP/dry.json" until):$(key "$TMP/dry.json" segments_checked)" = "1:1000:2"
untouched "--dry-run"

#  ---------------------------------------------------------------------
#  Refusals

#  Another broker's store, archived the same way: same seqs, other ids
API2=tcp://127.0.0.1:$(free_port)
FANOUT2=tcp://127.0.0.1:$(free_port)
B1=$BROKER_PID
start_broker "$TMP/data2" "$API2" "$FANOUT2"
"$HERALD" --endpoint "$API2" pub orders.eu "$payload" --count 1500 >/dev/null 2>&1
"$HERALD" --endpoint "$API2" archive --until-seq 1500 --to "$TMP/other" >/dev/null 2>&1
stop_broker
BROKER_PID=$B1
"${H[@]}" trim --archive "$TMP/other" --until-seq 1000 >"$TMP/out" 2>"$TMP/err"
rc=$?
check "an archive of another broker's store: exit 1" test $rc -eq 1
check "  the broker refuses the digest (bad_request ids)" grep -q "bad_request: ids" "$TMP/err"
untouched "another broker's archive"

rm -rf "$TMP/bad"
cp -r "$A" "$TMP/bad"
seg2=$(awk '$1 == "segment" { i++; if (i == 2) print $2 }' "$A/index.hwa")
$PY -c 'import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[128 + 40 + 100] ^= 0x10            # inside the first block of events
open(p, "wb").write(b)' "$TMP/bad/$seg2"
"${H[@]}" trim --archive "$TMP/bad" --until-seq 1000 >"$TMP/out" 2>"$TMP/err"
rc=$?
check "a damaged segment: exit 1" test $rc -eq 1
check "  naming the file" grep -q "$seg2" "$TMP/err"
untouched "a damaged segment"

"${H[@]}" trim --archive "$A" --until-seq 2500 >"$TMP/out" 2>"$TMP/err"
rc=$?
check "an archive that ends before N: exit 1" test $rc -eq 1
check "  naming the missing seqs" grep -q "seqs 2001..2500 are not archived" "$TMP/err"
untouched "an archive that ends before N"

"${H[@]}" archive --until-seq 1500 --from-seq 500 --to "$TMP/late" >/dev/null 2>&1
"${H[@]}" trim --archive "$TMP/late" --until-seq 1000 >"$TMP/out" 2>"$TMP/err"
rc=$?
check "an archive that starts after the log's first seq: exit 1" test $rc -eq 1
check "  naming the seqs it lacks" grep -q "seqs 1..499 are not in it" "$TMP/err"
untouched "an archive that starts late"

"${H[@]}" trim --archive "$A" --prefix '$hb' >"$TMP/out" 2>"$TMP/err"
check "a prefix starting with \$: exit 64" test $? -eq 64
"${H[@]}" trim --unarchived --until-seq 10 >"$TMP/out" 2>"$TMP/err"
check "--unarchived without --prefix: exit 64" test $? -eq 64
untouched "usage errors"

#  ---------------------------------------------------------------------
#  --until-ts resolution (dry runs)

ts=$($PY -c 'import json,sys
print(json.loads(open(sys.argv[1]).readlines()[1499])["ts"])' "$TMP/before.json")
want=$($PY -c 'import json,sys
t = int(sys.argv[2])
print(max(e["seq"] for e in map(json.loads, open(sys.argv[1])) if e["ts"] <= t and e["seq"] <= 2000))' \
    "$TMP/before.json" "$ts")
"${H[@]}" trim --archive "$A" --until-ts "${ts}ns" --dry-run >"$TMP/dry.json" 2>"$TMP/err"
check "--until-ts with an archive: the last archived seq with ts <= T ($want)" \
    test "$(key "$TMP/dry.json" until)" = "$want"
ts=$($PY -c 'import json,sys
print(json.loads(open(sys.argv[1]).readlines()[1300])["ts"])' "$TMP/before.json")
want=$($PY -c 'import json,sys
t = int(sys.argv[2])
after = [e["seq"] for e in map(json.loads, open(sys.argv[1]))
         if e["topic"].startswith("stock.") and e["ts"] > t]
print(after[0] - 1 if after else 3000)' "$TMP/before.json" "$ts")
"${H[@]}" trim --unarchived --prefix stock. --until-ts "${ts}ns" --dry-run >"$TMP/dry.json" \
    2>"$TMP/err"
check "--until-ts unarchived: the seq before stock.'s first event after T ($want)" \
    test "$(key "$TMP/dry.json" until)" = "$want"
untouched "dry runs with --until-ts"

#  ---------------------------------------------------------------------
#  A prefix trim, then the whole log up to the archive's end

"${H[@]}" trim --archive "$A" --prefix stock. --until-seq 1400 >"$TMP/out" 2>"$TMP/err"
check "trim --archive --prefix stock. --until-seq 1400: exit 0" test $? -eq 0
check "  first for stock. is 1401" test "$(key "$TMP/out" first)" = 1401
"${H[@]}" replay --prefix orders. >"$TMP/now.json" 2>&1
grep '"topic":"orders\.' "$TMP/before.json" >"$TMP/orders.json"
check "  every orders. event is still there" cmp -s "$TMP/orders.json" "$TMP/now.json"
"${H[@]}" replay --prefix stock. >"$TMP/out" 2>"$TMP/err"
check "  replay --prefix stock. from 1: exit 1, first 1401" \
    bash -c "[ $? -eq 1 ] && grep -q 'for these prefixes is 1401 (herald replay --from 1401)' '$TMP/err'"

"${H[@]}" trim --archive "$A" >"$TMP/out" 2>"$TMP/err"
check "trim --archive (to the archive's end): exit 0" test $? -eq 0
check "  trimmed up to 2000, first 2001" test "$(key "$TMP/out" until):$(key "$TMP/out" \
    first)" = "2000:2001"
check "  STATUS: first 2001, both trim points" test "$(trim_state)" = "2001|:2000,stock.:1400"
"${H[@]}" trim --archive "$A" >"$TMP/out" 2>"$TMP/err"
check "  again: nothing to trim, exit 0" bash -c "[ $? -eq 0 ] && grep -q '\"trimmed\":false' '$TMP/out'"

#  ---------------------------------------------------------------------
#  After the trim

pub_again () {     #  pub_again ID TOPIC DATA [OPTIONS]: the retry's reply
    local id=$1
    shift
    "${H[@]}" pub "$@" --id "$id" 2>&1
}
check "a retry of trimmed id $ID1 is a duplicate with seq 1, ver 1" \
    bash -c "[[ '$(pub_again $ID1 orders.eu '{"order":1}' --type order.placed)' == *'\"seq\":1,\"ver\":1,\"dup\":true'* ]]"
check "a retry of trimmed id $ID3 (meta) is a duplicate with seq 3, ver 1" \
    bash -c "[[ '$(pub_again $ID3 orders.us '{"order":3}' --meta source=web)' == *'\"seq\":3,\"ver\":1,\"dup\":true'* ]]"
id=$($PY -c 'import json,sys
print([e for e in map(json.loads, open(sys.argv[1])) if e["seq"] == 1500][0]["id"])' \
    "$TMP/before.json")
line=$(sed -n 1500p "$TMP/before.json")
topic=$(echo "$line" | $PY -c 'import json,sys; print(json.load(sys.stdin)["topic"])')
ver=$(echo "$line" | $PY -c 'import json,sys; print(json.load(sys.stdin)["ver"])')
data=$(echo "$line" | $PY -c 'import json,sys; print(json.load(sys.stdin)["data"])')
if [ "$topic" = orders.eu ]; then opts=(--type order.placed --meta source=web); else opts=(); fi
check "a retry of seq 1500 ($topic, trimmed) is a duplicate with seq 1500, ver $ver" \
    bash -c "[[ '$(pub_again "$id" "$topic" "$data" "${opts[@]}")' == *'\"seq\":1500,\"ver\":$ver,\"dup\":true'* ]]"
check "  and nothing was stored again (head 3000)" \
    test "$("${H[@]}" status | $PY -c 'import json,sys; print(json.load(sys.stdin)["head"])')" = 3000

"$HERALD" replay --archive "$A" --continue --endpoint "$API" >"$TMP/all.json" 2>"$TMP/err"
check "replay --archive --continue equals the replay before the trim, byte for byte" \
    cmp -s "$TMP/before.json" "$TMP/all.json"
"$HERALD" replay --archive "$A" --continue --endpoint "$API" --format table >"$TMP/all.table" \
    2>"$TMP/err"
check "  and in a table" cmp -s "$TMP/before.table" "$TMP/all.table"

"${H[@]}" replay >"$TMP/out" 2>"$TMP/err"
rc=$?
check "replay from 1: exit 1" test $rc -eq 1
check "  with the broker's trimmed message" grep -q "^herald: trimmed: " "$TMP/err"
check "  and the first seq and the hint" grep -q "is 2001 (herald replay --from 2001).*herald replay --archive DIR --continue" "$TMP/err"
check "  nothing on stdout" test ! -s "$TMP/out"
"${H[@]}" replay --from 2001 >"$TMP/out" 2>"$TMP/err"
check "replay --from 2001: the rest of the log" cmp -s "$TMP/out" <(tail -1000 "$TMP/before.json")
#  read_trimmed TOPIC: read it from ver 1 refused, naming the first ver still there
#  (the topic's first with seq > 2000; its ver + 1 when every event of it is trimmed)
read_trimmed () {
    local want rc
    want=$($PY -c 'import json,sys
evs = [e for e in map(json.loads, open(sys.argv[1])) if e["topic"] == sys.argv[2]]
live = [e["ver"] for e in evs if e["seq"] > 2000]
print(min(live) if live else max(e["ver"] for e in evs) + 1)' "$TMP/before.json" "$1")
    "${H[@]}" read "$1" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    check "read $1 from ver 1: exit 1, first ver $want ($2)" \
        bash -c "[ $rc -eq 1 ] && grep -q 'its first version still there is $want (herald read $1 --from-ver $want)' '$TMP/err'"
    "${H[@]}" read "$1" --from-ver "$want" >"$TMP/out" 2>"$TMP/err"
    check "  read $1 --from-ver $want: exit 0, the rest of it" \
        cmp -s "$TMP/out" <(grep "\"topic\":\"$1\"" "$TMP/before.json" | $PY -c 'import json,sys
for line in sys.stdin:
    if json.loads(line)["seq"] > 2000:
        sys.stdout.write(line)')
}
read_trimmed orders.us "some of it trimmed"
read_trimmed orders.eu "all of it trimmed"
"${H[@]}" tail orders. --from 5 --max 1 >"$TMP/out" 2>"$TMP/err"
check "tail --from 5: exit 1, first 2001" \
    bash -c "[ $? -eq 1 ] && grep -q 'is 2001 (herald tail --from 2001)' '$TMP/err'"

#  ---------------------------------------------------------------------
#  kill -9 right after a trim; a second round

"${H[@]}" pub orders.eu "$payload" --count 1000 >/dev/null 2>&1
"${H[@]}" replay --from 2001 >"$TMP/round2.json"
"${H[@]}" archive --until-seq 3500 --to "$A" --segment-events 700 >"$TMP/out" 2>&1
check "round 2: archive 2001..3500" grep -q "archived seq 2001..3500 " "$TMP/out"
"${H[@]}" trim --archive "$A" >"$TMP/out" 2>"$TMP/err"
check "round 2: trim to 3500" test "$(key "$TMP/out" first)" = 3501
kill -KILL "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null
start_broker "$TMP/data" "$API" "$FANOUT"
check "kill -9 right after the trim, restarted: still trimmed (first 3501)" \
    test "$(trim_state)" = "3501|:3500,stock.:1400"
"${H[@]}" replay --from 3000 >"$TMP/out" 2>"$TMP/err"
check "  replay --from 3000 still refused, first 3501" grep -q "is 3501 (herald replay --from 3501)" "$TMP/err"
check "  a retry of a round-2 id is still a duplicate" \
    bash -c "[[ '$(pub_again "$(sed -n 1500p "$TMP/round2.json" | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')" orders.eu "$payload")' == *'\"seq\":3500,'*'\"dup\":true'* ]]"
cat "$TMP/before.json" <(tail -1000 "$TMP/round2.json") >"$TMP/want.json"
"$HERALD" replay --archive "$A" --continue --endpoint "$API" >"$TMP/all.json" 2>"$TMP/err"
check "  replay --archive --continue is still the whole log (4000 events), byte for byte" \
    cmp -s "$TMP/want.json" "$TMP/all.json"
"$HERALD" archive verify "$A" >/dev/null 2>&1
check "  the archive verifies" test $? -eq 0

#  ---------------------------------------------------------------------
#  A gap between the archive and the live log: refused, nothing printed

"${H[@]}" trim --unarchived --prefix '' --until-seq 3700 --wait 10 >"$TMP/out" 2>"$TMP/err"
check "trim --unarchived --prefix '' --until-seq 3700: exit 0" test $? -eq 0
"$HERALD" replay --archive "$A" --continue --endpoint "$API" >"$TMP/out" 2>"$TMP/err"
rc=$?
check "replay --archive --continue across the gap: exit 1" test $rc -eq 1
check "  naming the missing seqs 3501..3700" grep -q "seqs 3501..3700 are neither in" "$TMP/err"
check "  and printing nothing" test ! -s "$TMP/out"
"$HERALD" replay --archive "$A" --continue --endpoint "$API" --to 3400 >"$TMP/out" 2>"$TMP/err"
check "  a range the archive holds whole is still served" \
    cmp -s "$TMP/out" <(head -3400 "$TMP/want.json")

"${H[@]}" archive --until-seq 4000 --to "$A" >"$TMP/out" 2>"$TMP/err"
rc=$?
check "archive after the unarchived trim past its end: exit 1, trimmed (first 3701)" \
    bash -c "[ $rc -eq 1 ] && grep -q '^herald: trimmed: .*is 3701' '$TMP/err'"
check "  and the archive is as it was (to 3500)" \
    bash -c "'$HERALD' archive verify '$A' | grep -q 'holds seq 1..3500 '"

#  ---------------------------------------------------------------------
#  A trim applied while a replay runs: it stops after the events before
#  the trim point, exit 1, never a hole.  herald blocks writing to a pipe
#  nobody reads (64 KiB: ~60 of these 1 KiB events, plus --credit 10), so
#  the stream is at most ~100 events in when the trim lands at 2000

stop_broker
API3=tcp://127.0.0.1:$(free_port)
FANOUT3=tcp://127.0.0.1:$(free_port)
start_broker "$TMP/data3" "$API3" "$FANOUT3"
big=$($PY -c 'print("{\"pad\":\"%s\"}" % ("x" * 1000))')
"$HERALD" --endpoint "$API3" pub big.1 "$big" --count 3000 >/dev/null 2>&1
mkfifo "$TMP/fifo"
"$HERALD" --endpoint "$API3" --timeout 20000 replay --credit 10 >"$TMP/fifo" 2>"$TMP/mid.err" &
REPLAY=$!
PIDS+=($REPLAY)
exec 3<"$TMP/fifo"
IFS= read -r first_line <&3
"$HERALD" --endpoint "$API3" trim --unarchived --prefix '' --until-seq 2000 >/dev/null 2>&1
check "  (the trim during the replay was applied)" test $? -eq 0
{ echo "$first_line"; cat <&3; } >"$TMP/mid.json"
exec 3<&-
wait $REPLAY
rc=$?
check "a replay running when the log is trimmed: exit 1" test $rc -eq 1
check "  what it printed is seqs 1..k, k < 2001, none skipped" $PY -c 'import json,sys
seqs = [json.loads(line)["seq"] for line in open(sys.argv[1])]
assert seqs and seqs == list(range(1, len(seqs) + 1)) and len(seqs) <= 2000, seqs[-3:]' \
    "$TMP/mid.json"
k=$(wc -l <"$TMP/mid.json")
check "  it says so: stopped after $k events, the first seq still there 2001" \
    bash -c "grep -q 'stopped after $k events: the events after them were trimmed' '$TMP/mid.err' && grep -q 'is 2001 (herald replay --from 2001)' '$TMP/mid.err'"

#  ---------------------------------------------------------------------
#  No broker

DEAD=tcp://127.0.0.1:$(free_port)
"$HERALD" --endpoint "$DEAD" --timeout 500 trim --archive "$A" >"$TMP/out" 2>"$TMP/err"
check "no broker: exit 2" test $? -eq 2

shtest_done

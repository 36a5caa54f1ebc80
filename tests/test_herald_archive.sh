#!/bin/bash
#  =========================================================================
#  test_herald_archive - herald archive, archive verify, replay --archive
#  against a real heraldd and real files (issue 17)
#
#  Checked: archive -> verify -> replay --archive prints byte for byte what
#  herald replay prints from the broker (JSON and table, with --from/--to/
#  --from-ts/--until-ts/--prefix/--max), and --continue goes on into the
#  broker with no gap or duplicate; --until-ts ends exactly at the last
#  event with ts <= T (T one ns below a ts, and T a ts shared by a
#  batch); a second run appends where the first ended, and a --from-seq
#  that would leave a gap or an overlap is refused with nothing written;
#  damage (a flipped byte in a segment's header, block head, block, ids
#  block and trailer; a cut segment; a missing segment; an edited or cut
#  index) makes verify exit 1 naming the file (and offset), and replay
#  --archive refuses (nothing printed for a missing or cut segment, a bad
#  index; never an event from a damaged block); a broker killed -9 mid-
#  archive, and the archiver killed -9 mid-segment, leave an index that
#  names only complete segments, and the next run resumes to an archive
#  equal to the broker's log; usage errors are exit 64 with nothing
#  written; no broker is exit 2.
#
#  Ports are free ones; every wait is a bounded poll; the EXIT trap kills
#  what the test started and removes the temporary directory.  The last line
#  is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_archive

API_PORT=$(free_port)
FANOUT_PORT=$(free_port)
while [ "$FANOUT_PORT" = "$API_PORT" ]; do FANOUT_PORT=$(free_port); done
API=tcp://127.0.0.1:$API_PORT
FANOUT=tcp://127.0.0.1:$FANOUT_PORT
H=("$HERALD" --endpoint "$API" --timeout 3000)
A=$TMP/arc

start_broker () {
    "$HERALDD" --data-dir "$TMP/data" --api "$API" --fanout "$FANOUT" >>"$TMP/heraldd.log" 2>&1 &
    BROKER_PID=$!
    local _
    for _ in $(seq 1 100); do
        "${H[@]}" --timeout 200 status >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "not ok - heraldd did not answer STATUS; its log:"
    sed 's/^/#   /' "$TMP/heraldd.log"
    echo "0 passed, 1 failed"
    exit 1
}

#  same DESCRIPTION ARGS...: replay ARGS from the broker and from $A agree
#  byte for byte (and the archive's replay exits 0)
same () {
    local what=$1
    shift
    "${H[@]}" replay "$@" >"$TMP/broker.out" 2>"$TMP/broker.err"
    "$HERALD" replay --archive "$A" "$@" >"$TMP/archive.out" 2>"$TMP/archive.err"
    local rc=$?
    if [ $rc -eq 0 ] && cmp -s "$TMP/broker.out" "$TMP/archive.out" \
    && [ -s "$TMP/broker.out" ]; then
        ok "$what ($(wc -l <"$TMP/broker.out") lines)"
    else
        not_ok "$what: rc $rc, $(wc -l <"$TMP/broker.out") vs $(wc -l <"$TMP/archive.out") lines"
        diff "$TMP/broker.out" "$TMP/archive.out" | head -5 | sed 's/^/#   /'
        sed 's/^/#   /' "$TMP/archive.err"
    fi
}

#  quiet COMMAND...: COMMAND, its output dropped
quiet () { "$@" >/dev/null 2>&1; }

#  flip FILE OFFSET: invert one bit of the byte at OFFSET (from the end when negative)
flip () {
    $PY -c 'import sys
p, o = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
b[o] ^= 0x10
open(p, "wb").write(b)' "$1" "$2"
}

#  seg_of DIR N: the file name of DIR's Nth segment (1-based), from the index
seg_of () {
    awk -v n="$2" '$1 == "segment" { i++; if (i == n) print $2 }' "$1/index.hwa"
}

start_broker

#  A realistic mix: three topics, JSON payloads of ~200 bytes, a type, meta
payload='{"order":"A-1029384","customer":"c-48213","items":[{"sku":"SKU-1","qty":2,"price":19.99},{"sku":"SKU-77","qty":1,"price":5.5}],"currency":"EUR","note":"leave at the door"}'
"${H[@]}" pub orders.eu "$payload" --count 3000 --type order.placed --meta source=web \
    >/dev/null 2>&1
"${H[@]}" pub stock.sku1 '{"delta":-2}' --count 500 >/dev/null 2>&1
"${H[@]}" pub orders.us "$payload" --count 1500 --batch 10 >/dev/null 2>&1
check "5000 events published" test "$("${H[@]}" status --format json | $PY -c \
    'import json,sys; print(json.load(sys.stdin)["head"])')" = 5000

#  ---------------------------------------------------------------------
#  archive, verify, replay --archive

"${H[@]}" archive --until-seq 3200 --to "$A" --segment-events 700 >"$TMP/out" 2>"$TMP/err"
check "archive to seq 3200 exits 0" test $? -eq 0
check "it says what it archived" grep -q "archived seq 1..3200 (3200 events, 5 segments" "$TMP/out"
check "five segment files and an index" test "$(ls "$A"/seg-*.hwa | wc -l)" -eq 5
check "no temporary file is left" test -z "$(ls -A "$A" | grep '\.tmp$')"
"$HERALD" archive verify "$A" >"$TMP/out" 2>&1
check "verify passes" grep -q "^ok: $A holds seq 1..3200 (3200 events, 5 segments" "$TMP/out"

same "replay --archive --to 3200 equals the broker's replay (JSON)" --to 3200
same "the same in a table" --to 3200 --format table
same "--from/--to inside and across segments" --from 650 --to 2150
same "--prefix" --prefix stock. --to 3200
same "--prefix and --max" --prefix orders. --from 100 --max 777
ts=$("${H[@]}" replay --from 1234 --max 1 | $PY -c 'import json,sys; print(json.load(sys.stdin)["ts"])')
same "--from-ts and --until-ts inside the archive" --from-ts "${ts}ns" --until-ts "$((ts + 1))ns"

"$HERALD" replay --archive "$A" --continue --endpoint "$API" >"$TMP/archive.out" 2>&1
"${H[@]}" replay >"$TMP/broker.out"
check "replay --archive --continue goes on into the broker: the whole log, once" \
    cmp -s "$TMP/broker.out" "$TMP/archive.out"
"$HERALD" replay --archive "$A" --continue --endpoint "$API" --from 3100 --max 200 \
    >"$TMP/archive.out" 2>&1
"${H[@]}" replay --from 3100 --max 200 >"$TMP/broker.out"
check "--continue across the archive's end with --from and --max" \
    cmp -s "$TMP/broker.out" "$TMP/archive.out"

#  ---------------------------------------------------------------------
#  appending: continuity, refusals

"${H[@]}" archive --until-seq 3300 --to "$A" --from-seq 3202 >"$TMP/out" 2>"$TMP/err"
rc=$?
check "a --from-seq after a gap is refused (exit 1)" test $rc -eq 1
check "  saying so" grep -q "would leave a gap (give --from-seq 3201" "$TMP/err"
"${H[@]}" archive --until-seq 3300 --to "$A" --from-seq 3000 >"$TMP/out" 2>"$TMP/err"
check "an overlapping --from-seq is refused" grep -q "would leave an overlap" "$TMP/err"
check "  and nothing was written" test "$(ls "$A"/seg-*.hwa | wc -l)" -eq 5

#  --until-ts: the ts shared by events 4000.. (a batch), and one ns before it
ts=$("${H[@]}" replay --from 4000 --max 1 | $PY -c 'import json,sys; print(json.load(sys.stdin)["ts"])')
last_at () {    #  the broker's last seq with ts <= $1 ns
    "${H[@]}" replay --from 3201 --until-ts "$1ns" | tail -1 | $PY -c \
        'import json,sys; print(json.load(sys.stdin)["seq"])'
}
want=$(last_at $((ts - 1)))
"${H[@]}" archive --until-ts "$((ts - 1))ns" --to "$A" >"$TMP/out" 2>&1
check "--until-ts one ns below a ts ends at the seq before it ($want)" \
    grep -q "archived seq 3201..$want " "$TMP/out"
want=$(last_at "$ts")
"${H[@]}" archive --until-ts "${ts}ns" --to "$A" --from-seq "$(($(last_at $((ts - 1))) + 1))" \
    >"$TMP/out" 2>&1
check "--until-ts at a batch's ts takes the whole batch (to $want), --from-seq right after" \
    grep -q "\.\.$want " "$TMP/out"
"${H[@]}" archive --until-ts "${ts}ns" --to "$A" >"$TMP/out" 2>&1
check "the same --until-ts again has nothing to archive" grep -q "nothing to archive" "$TMP/out"
"${H[@]}" archive --until-seq 999999 --to "$A" >"$TMP/out" 2>&1
check "--until-seq past the head archives to the head" grep -q "\.\.5000 " "$TMP/out"
"$HERALD" archive verify "$A" >"$TMP/out" 2>&1
check "the appended archive verifies" grep -q "holds seq 1..5000 (5000 events" "$TMP/out"
same "the appended archive replays as the broker does" --to 5000
check "the index lists every segment in seq order, no gap" $PY -c 'import sys
lines = [l.split() for l in open(sys.argv[1]) if l.startswith("segment ")]
nxt = 1
for l in lines:
    f = dict(zip(l[2::2], l[3::2]))
    assert int(f["first_seq"]) == nxt, l
    nxt = int(f["last_seq"]) + 1
assert nxt == 5001' "$A/index.hwa"

"${H[@]}" archive --until-seq 2500 --to "$TMP/mid" --from-seq 1801 >"$TMP/out" 2>&1
check "a new archive may start at --from-seq" grep -q "archived seq 1801..2500 " "$TMP/out"
"$HERALD" replay --archive "$TMP/mid" >"$TMP/archive.out"
"${H[@]}" replay --from 1801 --to 2500 >"$TMP/broker.out"
check "  replay --archive of it starts at its first seq" cmp -s "$TMP/broker.out" "$TMP/archive.out"
"$HERALD" replay --archive "$TMP/mid" --from 1700 >"$TMP/archive.out" 2>"$TMP/err"
check "  a --from before it is refused, naming what it holds" grep -q "holds seq 1801..2500, not seq 1700" "$TMP/err"

#  ---------------------------------------------------------------------
#  damage

#  damaged NAME SETUP...: copy the archive to $TMP/NAME, run SETUP there
#  (with $D the copy), then verify and replay --archive it
damaged () {
    local name=$1 expect=$2
    shift 2
    D=$TMP/$name
    rm -rf "$D"
    cp -r "$A" "$D"
    "$@"
    "$HERALD" archive verify "$D" >"$TMP/v.out" 2>"$TMP/v.err"
    local rc=$?
    if [ $rc -eq 1 ] && grep -q "$expect" "$TMP/v.err"; then
        ok "verify: $name: exit 1, $(cut -c1-140 "$TMP/v.err" | sed "s|$TMP/||g")"
    else
        not_ok "verify: $name: rc $rc, $(cat "$TMP/v.err") $(cat "$TMP/v.out")"
    fi
    "$HERALD" replay --archive "$D" >"$TMP/r.out" 2>"$TMP/r.err"
    rc=$?
    #  What was printed is a prefix of the true log, never a wrong event
    "$HERALD" replay --archive "$A" | head -n "$(wc -l <"$TMP/r.out")" >"$TMP/r.want"
    if [ $rc -eq 1 ] && cmp -s "$TMP/r.out" "$TMP/r.want"; then
        ok "replay --archive: $name: exit 1 after $(wc -l <"$TMP/r.out") right events"
    else
        not_ok "replay --archive: $name: rc $rc; $(cat "$TMP/r.err")"
    fi
}
S2=$(seg_of "$A" 2)
size2=$(stat -c %s "$A/$S2")
damaged header "$S2, offset 0: the header fails" flip "$TMP/header/$S2" 40
damaged block-head "$S2, offset 128: a block head fails" flip "$TMP/block-head/$S2" 140
damaged block "$S2, offset 168: a block's content fails its checksum" flip "$TMP/block/$S2" 1000
damaged ids "$S2, offset [0-9]*: a block's content fails" flip "$TMP/ids/$S2" $((size2 - 70))
damaged trailer "$S2, offset [0-9]*: the trailer is damaged" flip "$TMP/trailer/$S2" $((size2 - 50))
damaged file-digest "$S2, offset [0-9]*: the file's checksum" flip "$TMP/file-digest/$S2" $((size2 - 10))
damaged cut "$S2, offset [0-9]*: the file is" truncate -s -100 "$TMP/cut/$S2"
damaged missing "$S2: missing" rm "$TMP/missing/$S2"
check "  a missing segment: replay --archive printed nothing" test ! -s "$TMP/r.out"
damaged index-edit "index.hwa line 2: the checksum\|index.hwa line [0-9]*: the checksum" \
    sed -i '2s/lineage 0/lineage 1/' "$TMP/index-edit/index.hwa"
damaged index-cut "index.hwa.*no end line" sed -i '$d' "$TMP/index-cut/index.hwa"
damaged index-missing "index.hwa: No such file" rm "$TMP/index-missing/index.hwa"
check "  a damaged index: replay --archive printed nothing" test ! -s "$TMP/r.out"

#  ---------------------------------------------------------------------
#  a run that dies: the broker killed -9, then the archiver killed -9

"${H[@]}" pub bulk.x "$payload" --count 60000 --batch 1000 >/dev/null 2>&1
K=$TMP/kill
"${H[@]}" archive --until-seq 65000 --to "$K" --segment-events 2000 --credit 20 \
    >"$TMP/k.out" 2>"$TMP/k.err" &
ARCH=$!
PIDS+=("$ARCH")
for _ in $(seq 1 400); do
    [ "$(seg_of "$K" 2 2>/dev/null)" ] && break
    sleep 0.025
done
kill -KILL "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null
BROKER_PID=
wait "$ARCH"
rc=$?
check "the broker killed mid-archive: the archive exits 2 or 1 ($rc)" test $rc -eq 2 -o $rc -eq 1
check "  no temporary file is left" test -z "$(ls -A "$K" | grep '\.tmp$')"
segments=$(grep -c '^segment' "$K/index.hwa")
check "  the index names complete segments only ($segments) and verifies" \
    quiet "$HERALD" archive verify "$K"
check "  no segment file beyond the index" test "$(ls "$K"/seg-*.hwa | wc -l)" -eq "$segments"
start_broker
"${H[@]}" archive --until-seq 65000 --to "$K" --segment-events 2000 >"$TMP/k.out" 2>&1
check "  the next run resumes after the last indexed seq" \
    grep -q "archived seq $((segments * 2000 + 1))..65000 " "$TMP/k.out"

K2=$TMP/kill2
"${H[@]}" archive --until-seq 65000 --to "$K2" --segment-events 2000 --credit 1 \
    >"$TMP/k.out" 2>"$TMP/k.err" &
ARCH=$!
PIDS+=("$ARCH")
for _ in $(seq 1 400); do
    [ -n "$(ls -A "$K2" 2>/dev/null | grep '\.tmp$')" ] && [ "$(seg_of "$K2" 1 2>/dev/null)" ] \
        && break
    sleep 0.025
done
kill -KILL "$ARCH"
wait "$ARCH" 2>/dev/null
check "the archiver killed -9 mid-segment: its temporary file is there" \
    test -n "$(ls -A "$K2" | grep '\.tmp$')"
check "  and the index names only complete segments" quiet "$HERALD" archive verify "$K2"
"${H[@]}" archive --until-seq 65000 --to "$K2" --segment-events 20000 >"$TMP/k.out" 2>&1
check "  the next run removes it and resumes" test -z "$(ls -A "$K2" | grep '\.tmp$')"
A=$K2
same "  the resumed archive replays as the broker does" --to 65000
A=$K
same "the archive resumed after the broker's death replays as the broker does" --to 65000

#  ---------------------------------------------------------------------
#  a full disk: the archive on a 256 KiB tmpfs, in a mount namespace of
#  its own (so the mount goes with the process); skipped where it cannot
#  mount (not root)

if unshare --mount true 2>/dev/null; then
    mkdir -p "$TMP/small"
    unshare --mount bash -c '
        mount -t tmpfs -o size=256k tmpfs "$1" || exit 99
        "$2" --endpoint "$3" archive --until-seq 65000 --to "$1/arc" --segment-events 2000 \
            >"$4.out" 2>"$4.err"
        echo $? >"$4.rc"
        ls -A "$1/arc" >"$4.ls"
        "$2" archive verify "$1/arc" >"$4.verify" 2>&1
        echo $? >"$4.vrc"
        grep -c "^segment" "$1/arc/index.hwa" >"$4.segments"
        ls "$1/arc" | grep -c "^seg-" >"$4.files"' _ "$TMP/small" "$HERALD" "$API" "$TMP/full"
    check "a full disk: archive exits 1" test "$(cat "$TMP/full.rc")" = 1
    check "  saying why" grep -q "No space left on device" "$TMP/full.err"
    check "  no temporary file is left" test -z "$(grep '\.tmp$' "$TMP/full.ls")"
    check "  the index names only complete segments, and verifies" \
        test "$(cat "$TMP/full.vrc")" = 0
    check "  some segments were archived before the disk filled ($(cat "$TMP/full.segments"))" \
        test "$(cat "$TMP/full.segments")" -ge 1
else
    echo "ok - # SKIP a full disk: cannot make a mount namespace here (not root)"
fi

#  ---------------------------------------------------------------------
#  CURVE: a broker with security on; a key that reads everything
#  archives, one whose scope reads only orders. is refused (an archive
#  with holes would be no archive)

KEYS=$TMP/keys
mkdir -p "$KEYS"
keygen () {
    "$HERALD" keygen "$1" --dir "$KEYS" >/dev/null && "$HERALD" keygen --show "$KEYS/$1.key"
}
BROKER_KEY=$(keygen broker)
ALICE_KEY=$(keygen alice)
CAROL_KEY=$(keygen carol)
S_API=tcp://127.0.0.1:$(free_port)
S_FANOUT=tcp://127.0.0.1:$(free_port)
SCOPE_FANOUT=tcp://127.0.0.1:$(free_port)
cat >"$TMP/acl" <<EOF
[scope orders-view]
read = orders.
fanout = $SCOPE_FANOUT

[user alice]
key = $ALICE_KEY
read = *
publish = orders. stock.

[user carol]
key = $CAROL_KEY
scope = orders-view
EOF
chmod 600 "$TMP/acl"
"$HERALDD" --data-dir "$TMP/secure" --api "$S_API" --fanout "$S_FANOUT" \
    --curve-secret "$KEYS/broker.key_secret" --acl "$TMP/acl" >>"$TMP/secure.log" 2>&1 &
PIDS+=($!)
SA=("$HERALD" --endpoint "$S_API" --timeout 3000 --key "$KEYS/alice.key_secret"
    --server-key "@$KEYS/broker.key")
SC=("$HERALD" --endpoint "$S_API" --timeout 3000 --key "$KEYS/carol.key_secret"
    --server-key "@$KEYS/broker.key")
for _ in $(seq 1 100); do
    "${SA[@]}" --timeout 200 status >/dev/null 2>&1 && break
    sleep 0.1
done
"${SA[@]}" pub orders.1 '{"a":1}' --count 300 >/dev/null 2>&1
"${SA[@]}" pub stock.1 '{"b":2}' --count 200 >/dev/null 2>&1
"${SA[@]}" archive --until-seq 500 --to "$TMP/sec-arc" >"$TMP/s.out" 2>"$TMP/s.err"
check "CURVE: a key that reads every topic archives (--key, --server-key)" \
    grep -q "archived seq 1..500 " "$TMP/s.out"
"${SA[@]}" replay --format json >"$TMP/broker.out"
"$HERALD" replay --archive "$TMP/sec-arc" --format json >"$TMP/archive.out"
check "  and the archive replays as the broker does" cmp -s "$TMP/broker.out" "$TMP/archive.out"
"${SC[@]}" archive --until-seq 500 --to "$TMP/sec-carol" >"$TMP/s.out" 2>"$TMP/s.err"
rc=$?
check "CURVE: a key that may read only orders. is refused (exit 1)" test $rc -eq 1
check "  saying why: $(cut -c1-160 "$TMP/s.err")" grep -q "every seq must be archived\|unauthorized" \
    "$TMP/s.err"
check "  and leaves no archive" test ! -e "$TMP/sec-carol/index.hwa"

#  ---------------------------------------------------------------------
#  usage and no broker

usage () {
    local what=$1
    shift
    "$HERALD" --endpoint "$API" "$@" >"$TMP/u.out" 2>"$TMP/u.err"
    local rc=$?
    if [ $rc -eq 64 ] && [ ! -e "$TMP/u" ]; then
        ok "usage: $what: exit 64, $(head -1 "$TMP/u.err")"
    else
        not_ok "usage: $what: rc $rc"
    fi
}
usage "no --until-*" archive --to "$TMP/u"
usage "both --until-seq and --until-ts" archive --until-seq 5 --until-ts now --to "$TMP/u"
usage "no --to" archive --until-seq 5
usage "--until-seq 0" archive --until-seq 0 --to "$TMP/u"
usage "a bad --until-ts" archive --until-ts yesterday --to "$TMP/u"
usage "--segment-events 0" archive --until-seq 5 --to "$TMP/u" --segment-events 0
usage "--segment-events too large" archive --until-seq 5 --to "$TMP/u" --segment-events 100000001
usage "--credit too large" archive --until-seq 5 --to "$TMP/u" --credit 99999999
usage "an unknown option" archive --until-seq 5 --to "$TMP/u" --bogus
usage "verify without DIR" archive verify
usage "--continue without --archive" replay --continue
"$HERALD" replay --archive "$TMP/u" >"$TMP/u.out" 2>"$TMP/u.err"
check "replay --archive of a directory with no archive: exit 1" test $? -eq 1
check "  naming the index" grep -q "$TMP/u/index.hwa" "$TMP/u.err"
DEAD=$(free_port)
"$HERALD" --endpoint "127.0.0.1:$DEAD" --timeout 500 archive --until-seq 5 --to "$TMP/u" \
    >"$TMP/u.out" 2>"$TMP/u.err"
check "no broker: exit 2" test $? -eq 2
check "  and nothing is left behind" test ! -e "$TMP/u"

shtest_done

#!/bin/bash
#  =========================================================================
#  test_herald_cli_usage - the `herald` CLI as a newcomer meets it (issue 12)
#
#  Times in every form --from-ts/--until-ts take, and the forms refused;
#  --max 0; the one rule for exit 64 (a usage error is found before any
#  request is sent, and nothing is stored); topic, --meta and --timeout
#  errors that say why; -h and `herald help COMMAND`; progress without \r
#  off a terminal; the tables (status keys aligned, cuts marked, UTF-8);
#  inspect printing times as the event table does.
#
#  Starts broker/heraldd on free ports with a temporary data directory,
#  stops it with SIGTERM.  Expected results are computed from what the
#  broker stored (the events' own ts), never typed in.  Every wait is
#  bounded; the EXIT trap kills the broker and removes the temporary
#  directory.  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_cli_usage

#  py EXPR FILE...: exit 0 when the Python expression EXPR is true; `rows(i)`
#  are the JSON lines of the i-th FILE, `text(i)` its text
py () {
    $PY - "$@" <<'EOF'
import json, sys, datetime
expr, files = sys.argv[1], sys.argv[2:]
def text(i): return open(files[i], encoding="utf-8", errors="replace", newline="").read()
def rows(i): return [json.loads(l) for l in text(i).splitlines() if l.strip()]
def iso(ns, offset_minutes=0, digits=9):
    """ns as RFC 3339 at the given offset, with `digits` of fraction"""
    tz = datetime.timezone(datetime.timedelta(minutes=offset_minutes))
    t = datetime.datetime.fromtimestamp(ns // 10**9, tz)
    frac = ("%09d" % (ns % 10**9))[:digits]
    zone = "Z" if offset_minutes == 0 else t.strftime("%z")[:3] + ":" + t.strftime("%z")[3:]
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ("." + frac if digits else "") + zone
sys.exit(0 if eval("(" + expr + ")") else 1)
EOF
}

#  pyval EXPR FILE...: print EXPR's value (same helpers as py)
pyval () {
    $PY - "$@" <<'EOF'
import json, sys, datetime
expr, files = sys.argv[1], sys.argv[2:]
def text(i): return open(files[i], encoding="utf-8", errors="replace", newline="").read()
def rows(i): return [json.loads(l) for l in text(i).splitlines() if l.strip()]
def iso(ns, offset_minutes=0, digits=9):
    tz = datetime.timezone(datetime.timedelta(minutes=offset_minutes))
    t = datetime.datetime.fromtimestamp(ns // 10**9, tz)
    frac = ("%09d" % (ns % 10**9))[:digits]
    zone = "Z" if offset_minutes == 0 else t.strftime("%z")[:3] + ":" + t.strftime("%z")[3:]
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ("." + frac if digits else "") + zone
print(eval(expr))
EOF
}

#  usage_error NAME CMD...: CMD exits 64 with one line on stderr, saved
#  in $TMP/NAME.err, and nothing on stdout (bounded: a command that takes
#  its bad option for a good one may wait for events)
usage_error () {
    local name=$1
    shift
    timeout 20 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null
    local rc=$?
    if [ $rc -eq 64 ] && [ "$(wc -l <"$TMP/$name.err")" -eq 1 ] && [ ! -s "$TMP/$name.out" ]; then
        ok "$name: exit 64, one line on stderr"
    else
        not_ok "$name: exit 64, one line on stderr (got exit $rc, stderr: $(head -c 300 "$TMP/$name.err"))"
    fi
}

#  says NAME TEXT: the saved stderr of NAME holds TEXT
says () { check "$1 says '$2'" grep -qF -- "$2" "$TMP/$1.err"; }

API_PORT=$(free_port)
FANOUT_PORT=$(free_port)
while [ "$FANOUT_PORT" = "$API_PORT" ]; do FANOUT_PORT=$(free_port); done
API=tcp://127.0.0.1:$API_PORT
DATA=$TMP/data
H=("$HERALD" --endpoint "$API")

"$HERALDD" --data-dir "$DATA" --api "$API" --fanout "tcp://127.0.0.1:$FANOUT_PORT" \
    >"$TMP/heraldd.log" 2>&1 &
BROKER_PID=$!
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

#  Ten events, each its own PUBLISH, so their ts differ
for n in 1 2 3 4 5 6 7 8 9 10; do
    "${H[@]}" pub "t.$n" "event $n" >/dev/null 2>&1 || not_ok "pub event $n"
done
"${H[@]}" replay >"$TMP/all" 2>&1
check "ten events stored" py 'len(rows(0)) == 10' "$TMP/all"

#  ---------------------------------------------------------------------
#  Times (item 2)

#  from_ts_gives NAME TIME NS: replay --from-ts TIME prints exactly the
#  stored events with ts >= NS
from_ts_gives () {
    "${H[@]}" replay --from-ts "$2" >"$TMP/$1" 2>"$TMP/$1.err"
    local rc=$?
    check "replay --from-ts $2 ($1) exits 0" test $rc -eq 0
    check "replay --from-ts $2 ($1) prints the events at or after it" \
        py "[r['seq'] for r in rows(0)] == [r['seq'] for r in rows(1) if r['ts'] >= $3]
            and len(rows(0)) < 10" "$TMP/$1" "$TMP/all"
}

TS6=$(pyval 'rows(0)[5]["ts"]' "$TMP/all")
from_ts_gives rfc3339-ns "$(pyval "iso($TS6)" "$TMP/all")" "$TS6"
from_ts_gives rfc3339-offset "$(pyval "iso($TS6, 90)" "$TMP/all")" "$TS6"
from_ts_gives rfc3339-negative-offset "$(pyval "iso($TS6, -300)" "$TMP/all")" "$TS6"
MS6=$(( TS6 / 1000000 ))
from_ts_gives rfc3339-ms "$(pyval "iso($MS6 * 10**6, 0, 3)" "$TMP/all")" $(( MS6 * 1000000 ))
from_ts_gives unit-ms "${MS6}ms" $(( MS6 * 1000000 ))
US6=$(( TS6 / 1000 ))
from_ts_gives unit-us "${US6}us" $(( US6 * 1000 ))
from_ts_gives unit-ns "${TS6}ns" "$TS6"

TS10=$(pyval 'rows(0)[9]["ts"]' "$TMP/all")
"${H[@]}" replay --from-ts "$(( TS10 / 1000000000 + 1 ))s" >"$TMP/after" 2>&1
check "replay --from-ts SECONDs after the last event prints nothing, exit 0" \
    py 'len(rows(0)) == 0' "$TMP/after"

"${H[@]}" replay --from-ts -1h >"$TMP/hour" 2>&1
check "replay --from-ts -1h prints the events of the last hour" \
    py '[r["seq"] for r in rows(0)] == list(range(1, 11))' "$TMP/hour"
"${H[@]}" replay --until-ts -1h >"$TMP/until-hour" 2>&1
check "replay --until-ts -1h exits 0" test $? -eq 0
check "replay --until-ts -1h prints nothing (every event is newer)" \
    py 'len(rows(0)) == 0' "$TMP/until-hour"
"${H[@]}" replay --from-ts now >"$TMP/now" 2>&1
check "replay --from-ts now prints nothing" py 'len(rows(0)) == 0' "$TMP/now"

DAY=$(pyval 'iso(rows(0)[0]["ts"])[:10]' "$TMP/all")
DAY_NS=$(pyval "int(datetime.datetime.fromisoformat('${DAY}T00:00:00+00:00').timestamp()) * 10**9" "$TMP/all")
from_ts_gives_all () {
    "${H[@]}" replay --from-ts "$1" >"$TMP/day" 2>&1
    check "replay --from-ts $1 (a date: its midnight UTC) prints the events since" \
        py "[r['seq'] for r in rows(0)] == [r['seq'] for r in rows(1) if r['ts'] >= $DAY_NS]
            and len(rows(0)) > 0" "$TMP/day" "$TMP/all"
}
from_ts_gives_all "$DAY"

TS3=$(pyval 'rows(0)[2]["ts"]' "$TMP/all")
"${H[@]}" replay --from-ts "$(pyval "iso($TS3)" "$TMP/all")" \
    --until-ts "$(pyval "iso($TS6)" "$TMP/all")" >"$TMP/window" 2>&1
check "replay --from-ts ISO --until-ts ISO prints that window" \
    py "[r['seq'] for r in rows(0)] == [r['seq'] for r in rows(1) if $TS3 <= r['ts'] <= $TS6]" \
    "$TMP/window" "$TMP/all"

timeout 30 "${H[@]}" tail --from-ts -1h --max 10 >"$TMP/tail" 2>&1
check "tail --from-ts -1h --max 10 catches up the ten events" \
    py '[r["seq"] for r in rows(0)] == list(range(1, 11))' "$TMP/tail"

usage_error bare-number "${H[@]}" replay --from-ts "$(( TS6 / 1000000000 ))"
says bare-number "ambiguous: add a unit ($(( TS6 / 1000000000 ))s"
usage_error bare-number-tail "${H[@]}" tail --from-ts 1796229347
usage_error bare-until "${H[@]}" replay --until-ts 1796229347
usage_error month-13 "${H[@]}" replay --from-ts 2026-13-01
says month-13 "no month 13"
usage_error feb-30 "${H[@]}" replay --from-ts 2026-02-30T10:00:00Z
says feb-30 "2026-02 has no day 30"
usage_error no-zone "${H[@]}" replay --from-ts 2026-12-02T16:35:47
says no-zone "no zone: add Z"
usage_error garbage-time "${H[@]}" replay --from-ts yesterday
says garbage-time "2026-12-02T16:35:47Z"
usage_error overflow-time "${H[@]}" replay --from-ts 99999999999s
says overflow-time "after 2554-07-21"
usage_error before-1970 "${H[@]}" replay --from-ts 1969-12-31
usage_error empty-time-range "${H[@]}" replay --from-ts -1h --until-ts -2h
says empty-time-range "the range is empty"

#  ---------------------------------------------------------------------
#  --max (item 3): zero is a usage error, like --count 0

usage_error max-0 "${H[@]}" replay --max 0
says max-0 "leave --max out for no limit"
usage_error max-0-read "${H[@]}" read t.1 --max 0
usage_error max-0-tail "${H[@]}" tail --max 0
usage_error max-negative "${H[@]}" replay --max -1
usage_error max-garbage "${H[@]}" replay --max 5x
usage_error max-space "${H[@]}" replay --max ' 5'
"${H[@]}" replay --max 3 >"$TMP/max3" 2>&1
check "replay --max 3 prints 3 events" py 'len(rows(0)) == 3' "$TMP/max3"

#  ---------------------------------------------------------------------
#  Usage errors: exit 64, found before sending (item 7)

usage_error range-to-before-from "${H[@]}" replay --from 5 --to 2
says range-to-before-from "--to 2 is before --from 5"
usage_error range-from-0 "${H[@]}" replay --from 0
usage_error range-to-0 "${H[@]}" replay --to 0
usage_error range-both-from "${H[@]}" replay --from 2 --from-ts -1h
says range-both-from "give --from or --from-ts, not both"
usage_error range-both-to "${H[@]}" replay --to 2 --until-ts now
usage_error range-read "${H[@]}" read t.1 --from-ver 3 --to-ver 2
usage_error range-read-0 "${H[@]}" read t.1 --from-ver 0
usage_error range-tail "${H[@]}" tail --from 0
usage_error prefix-long "${H[@]}" replay --prefix "$(printf 'p%.0s' $(seq 256))"
says prefix-long "256 bytes long"

RULE="a topic must be 1-255 bytes of UTF-8, no NUL, not starting with \$"
usage_error topic-empty "${H[@]}" pub '' data
says topic-empty "topic '' is empty: $RULE"
usage_error topic-dollar "${H[@]}" pub '$hb' data
says topic-dollar "starts with \$"
usage_error topic-long "${H[@]}" pub "$(printf 'x%.0s' $(seq 256))" data
says topic-long "is 256 bytes long: $RULE"
usage_error topic-utf8 "${H[@]}" pub "$(printf 'bad\xff')" data
says topic-utf8 "is not valid UTF-8: $RULE"
usage_error topic-read "${H[@]}" read '$hb'
says topic-read "$RULE"

usage_error meta-empty-key "${H[@]}" pub t.meta data --meta =v
says meta-empty-key "has an empty key"
usage_error meta-no-equals "${H[@]}" pub t.meta data --meta kv
usage_error meta-twice "${H[@]}" pub t.meta data --meta k=1 --meta k=2
says meta-twice "key 'k' given twice"
usage_error meta-long-key "${H[@]}" pub t.meta data --meta "$(printf 'k%.0s' $(seq 65))=v"
usage_error type-long "${H[@]}" pub t.meta data --type "$(printf 'T%.0s' $(seq 256))"

usage_error timeout-garbage "${H[@]}" --timeout abc status
says timeout-garbage "--timeout: 'abc'"
usage_error timeout-after "${H[@]}" status --timeout 0

"${H[@]}" status >"$TMP/status-after" 2>&1
check "no usage error stored anything (head is still 10)" \
    py 'rows(0)[0]["head"] == 10 and rows(0)[0]["published"] == 10' "$TMP/status-after"

"${H[@]}" pub t.meta data --meta k=v --meta k2= >/dev/null 2>&1
check "pub --meta k=v --meta k2= (an empty value) is fine" test $? -eq 0

#  ---------------------------------------------------------------------
#  Help: -h everywhere, herald help COMMAND

for command in pub tail replay read status inspect repair; do
    "$HERALD" "$command" -h >"$TMP/h.$command" 2>&1
    check "herald $command -h exits 0" test $? -eq 0
    check "herald $command -h prints $command's usage" grep -q "^usage: herald $command" "$TMP/h.$command"
    "$HERALD" help "$command" >"$TMP/help.$command" 2>&1
    check "herald help $command prints the same" cmp -s "$TMP/h.$command" "$TMP/help.$command"
done
"$HERALD" pub t.x -h >"$TMP/h.late" 2>&1
check "herald pub TOPIC -h prints pub's usage, publishes nothing" \
    grep -q "^usage: herald pub" "$TMP/h.late"
"$HERALD" help >"$TMP/help" 2>&1
check "herald help prints the general usage" grep -q "^Commands:" "$TMP/help"
usage_error help-unknown "$HERALD" help frobnicate
"$HERALD" help -h >"$TMP/help-h" 2>&1
check "herald help -h prints the general usage" grep -q "^Commands:" "$TMP/help-h"
usage_error unknown-option "${H[@]}" replay --to-ts now
says unknown-option "replay: unexpected '--to-ts' (see herald replay --help)"
"${H[@]}" pub t.dash -- -h >"$TMP/dash" 2>&1
check "pub TOPIC -- -h publishes '-h' as data" py 'rows(0)[0]["ver"] == 1' "$TMP/dash"

#  ---------------------------------------------------------------------
#  Progress: \r only on a terminal

"${H[@]}" pub t.load --count 300 --batch 10 --window 1 >"$TMP/load" 2>"$TMP/load.err"
check "pub --count to a file exits 0" test $? -eq 0
check "pub --count's progress in a file has no carriage return" \
    py "'\r' not in text(0) and 'published 300/300 events' in text(0)" "$TMP/load.err"
$PY - "${H[@]}" >"$TMP/pty" 2>&1 <<'EOF'
import os, pty, sys
argv = sys.argv[1:] + ["pub", "t.load", "--count", "100"]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
out = b""
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace").replace("\r", "<CR>"))
EOF
check "pub --count on a terminal rewrites its progress line (\\r)" \
    grep -q "<CR>herald: published 100/100 events" "$TMP/pty"

#  ---------------------------------------------------------------------
#  Tables

"${H[@]}" pub t.table "$(printf 'caf\xc3\xa9 \x01\xff')" --type OrderCancelled >/dev/null 2>&1
"${H[@]}" pub t.table "$(printf 'd%.0s' $(seq 60))" --type ThisTypeNameIsTooLong >/dev/null 2>&1
"${H[@]}" pub t.table "$(printf 'e%.0s' $(seq 48))" --type "Caf$(printf '\xc3\xa9')" >/dev/null 2>&1
"${H[@]}" --format table replay --prefix t.table >"$TMP/table" 2>&1
check "table: a type that fits (14 characters) is shown whole" \
    py "any(l.split()[4] == 'OrderCancelled' for l in text(0).splitlines()[1:])" "$TMP/table"
check "table: a type that does not fit ends in ..." \
    py "any(l.split()[4] == 'ThisTypeNameI...' for l in text(0).splitlines()[1:])" "$TMP/table"
check "table: UTF-8 shows as itself, control and invalid bytes as ." \
    py "'café ..' in text(0) and ' Café ' in text(0)" "$TMP/table"
check "table: data that does not fit ends in ... (48 columns)" \
    py "('d' * 45 + '...') in text(0) and ('e' * 48) in text(0) and ('e' * 45 + '...') not in text(0)" "$TMP/table"
check "table: every DATA cell starts in the header's column" \
    py "len({len(l) - len(l.split(None, 5)[5]) for l in text(0).splitlines()}) == 1" "$TMP/table"

"${H[@]}" --format table status >"$TMP/status-table" 2>&1
check "status --format table: every value starts in one column" \
    py "len({len(l) - len(l.split(None, 1)[1]) for l in text(0).splitlines()}) == 1
        and len(text(0).splitlines()) > 20" "$TMP/status-table"

#  ---------------------------------------------------------------------
#  inspect: times as the event table prints them

kill -TERM "$BROKER_PID"
for _ in $(seq 1 100); do
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.1
done
wait "$BROKER_PID" 2>/dev/null
BROKER_PID=

"$HERALD" replay --endpoint "$API" --from 0 >/dev/null 2>"$TMP/stopped.err"
check "a usage error is found before connecting (exit 64 with no broker)" test $? -eq 64

"$HERALD" inspect --data-dir "$DATA" --format table >"$TMP/inspect-table" 2>&1
check "inspect --format table exits 0" test $? -eq 0
"$HERALD" inspect --data-dir "$DATA" >"$TMP/inspect-json" 2>&1
check "inspect's table prints the last ts as RFC 3339 UTC, its JSON as ns, the same instant" \
    py "('  last ts ' + iso(rows(1)[0]['last_ts'])) in text(0) and isinstance(rows(1)[0]['last_ts'], int)" \
    "$TMP/inspect-table" "$TMP/inspect-json"

shtest_done

#!/bin/bash
#  =========================================================================
#  test_herald_cli_sub - `herald sub list|show|reset|delete` on the
#  checkpoints a real agent wrote (issue 15)
#
#  A real heraldd and a real agent (tests/agent_child, the library's own
#  subscription) make the state directory.  Checked: list and show say
#  what the agent did (done = the broker's head once it is live; an in-doubt
#  event after a crash inside a handler), also while the agent runs; reset
#  and delete refuse while the agent holds the directory (naming its pid)
#  and change nothing; after a reset a real agent delivers again from the
#  new position, each event once (the dedup window was emptied); --to-ts
#  and --to-head ask the broker; a corrupt checkpoint is named with why and
#  left as it is; a missing name lists the names there; usage errors are
#  exit 64 with nothing changed.
#
#  Ports are free ones; every wait is a bounded poll; the EXIT trap kills
#  the broker and the agents and removes the temporary directory.  The last
#  line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_cli_sub

AGENT=$BUILD/tests/agent_child
if [ ! -x "$AGENT" ]; then
    echo "not ok - $AGENT is not built (make check builds it)"
    echo "0 passed, 1 failed"
    exit 1
fi

#  json FILE KEY: the value of KEY in the JSON object on FILE's first line
json () {
    $PY -c 'import json, sys
v = json.loads(open(sys.argv[1]).readline())[sys.argv[2]]
print("null" if v is None else str(v).lower() if isinstance(v, bool) else v)' "$1" "$2"
}

#  sub NAME ARGS...: run herald sub ARGS, stdout in $TMP/NAME.out, stderr
#  in $TMP/NAME.err, the exit status in $TMP/NAME.rc
sub () {
    local name=$1
    shift
    timeout 30 "$HERALD" sub "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null
    echo $? >"$TMP/$name.rc"
}
rc_is () { check "$1: exit $2" [ "$(cat "$TMP/$1.rc")" = "$2" ]; }
says () { check "$1 says '$2'" grep -qF -- "$2" "$TMP/$1.err"; }
prints () { check "$1 prints '$2'" grep -qF -- "$2" "$TMP/$1.out"; }

API_PORT=$(free_port)
FANOUT_PORT=$(free_port)
while [ "$FANOUT_PORT" = "$API_PORT" ]; do FANOUT_PORT=$(free_port); done
API=tcp://127.0.0.1:$API_PORT
FANOUT=tcp://127.0.0.1:$FANOUT_PORT
H=("$HERALD" --endpoint "$API")
STATE=$TMP/state
SUBS=$STATE/subs

"$HERALDD" --data-dir "$TMP/data" --api "$API" --fanout "$FANOUT" >"$TMP/heraldd.log" 2>&1 &
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

#  Ten orders events and five others, interleaved, each its own PUBLISH
#  (so their ts differ)
for n in 1 2 3 4 5 6 7 8 9 10; do
    "${H[@]}" pub "orders.$n" "order $n" >/dev/null || not_ok "pub orders.$n"
    if [ $((n % 2)) -eq 0 ]; then "${H[@]}" pub "other.$n" x >/dev/null || not_ok "pub other.$n"; fi
done
"${H[@]}" replay >"$TMP/all"
HEAD=$(wc -l <"$TMP/all")
check "fifteen events stored" [ "$HEAD" -eq 15 ]
#  The seqs of the orders events, in order
$PY -c 'import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["topic"].startswith("orders."): print(e["seq"])' "$TMP/all" >"$TMP/orders_seqs"

#  start_agent NAME LOG [KILL_AT]: an agent subscribing NAME to orders.
#  from the beginning (or from its checkpoint), logging "seq id redelivered"
start_agent () {
    "$AGENT" subscribe "$STATE" "$API" "$FANOUT" "$1" orders. "$2" "${3:-0}" \
        >"$TMP/agent.out" 2>"$TMP/agent.err" &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
}
stop_agent () {
    kill -TERM "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
}
#  wait_lines FILE N: until FILE has N lines (at most 10 s)
wait_lines () {
    for _ in $(seq 1 200); do
        [ "$(cat "$1" 2>/dev/null | wc -l)" -ge "$2" ] && return 0
        sleep 0.05
    done
    return 1
}
#  wait_done NAME SEQ: until sub show NAME says done SEQ (at most 10 s)
wait_done () {
    for _ in $(seq 1 200); do
        sub wait show "$1" --state-dir "$STATE" --format json
        [ "$(cat "$TMP/wait.rc")" = 0 ] && [ "$(json "$TMP/wait.out" done)" = "$2" ] && return 0
        sleep 0.05
    done
    return 1
}

#  ---------------------------------------------------------------------
#  list and show beside a running agent

start_agent orders "$TMP/log1"
check "the agent handles the ten orders events" wait_lines "$TMP/log1" 10
check "its checkpoint reaches the broker's head ($HEAD)" wait_done orders "$HEAD"

sub list1 list --state-dir "$STATE"
rc_is list1 0
check "list: a header and the subscription's row (done $HEAD, lineage 0, not in doubt)" \
    grep -qE "^orders +$HEAD +0 +no +[0-9]+ +20[0-9-]+T" "$TMP/list1.out"
prints list1 "1 subscription in $SUBS; in use by a running agent"

sub show1 show orders --state-dir "$STATE" --format json
rc_is show1 0
check "show --format json: done, in_doubt, window_fill 10, in_use with the agent's pid" \
    $PY -c 'import json, sys
o = json.loads(open(sys.argv[1]).read())
sys.exit(0 if o["done"] == int(sys.argv[2]) and o["in_doubt"] is False and o["window_fill"] == 10
         and o["window"] >= 10 and o["in_use"] is True and ("pid %s" % sys.argv[3]) in o["holder"]
         and o["lineage"] == 0 else 1)' "$TMP/show1.out" "$HEAD" "$AGENT_PID"
sub show1t show orders --state-dir "$STATE"
prints show1t "window     "
prints show1t "in_use     yes, by a running agent (pid $AGENT_PID)"

#  ---------------------------------------------------------------------
#  reset and delete refused while the agent runs; nothing changed

cp "$SUBS/orders.ckpt" "$TMP/before.ckpt"
sub locked reset orders --state-dir "$STATE" --to-start
rc_is locked 1
says locked "state directory $STATE is in use by a running agent (pid $AGENT_PID): stop the service first"
sub locked_delete delete orders --state-dir "$STATE"
rc_is locked_delete 1
says locked_delete "is in use by a running agent (pid $AGENT_PID)"
check "the refused reset and delete left the checkpoint as it was" cmp -s "$SUBS/orders.ckpt" "$TMP/before.ckpt"
stop_agent

#  ---------------------------------------------------------------------
#  reset --to-seq: a real agent delivers again from there, each event once

FROM=$(sed -n 4p "$TMP/orders_seqs")             #  the fourth orders event
sub reset1 reset orders --state-dir "$STATE" --to-seq "$FROM"
rc_is reset1 0
prints reset1 "subscription orders in $STATE: done $HEAD -> $((FROM - 1))"
prints reset1 "dedup window emptied (10 ids)"
sub show2 show orders --state-dir "$STATE" --format json
check "show after the reset: done $((FROM - 1)), window empty, not in use" \
    $PY -c 'import json, sys
o = json.loads(open(sys.argv[1]).read())
sys.exit(0 if o["done"] == int(sys.argv[2]) and o["window_fill"] == 0 and o["in_use"] is False
         else 1)' "$TMP/show2.out" "$((FROM - 1))"

start_agent orders "$TMP/log2"
check "the agent delivers the seven orders events from seq $FROM again" wait_lines "$TMP/log2" 7
check "its checkpoint reaches the head again" wait_done orders "$HEAD"
stop_agent
check "exactly the orders events from seq $FROM, in order, once each, not flagged" \
    $PY -c 'import sys
want = [int(l) for l in open(sys.argv[1]) if int(l) >= int(sys.argv[3])]
got = [l.split() for l in open(sys.argv[2])]
sys.exit(0 if [int(g[0]) for g in got] == want and all(g[2] == "0" for g in got) else 1)' \
    "$TMP/orders_seqs" "$TMP/log2" "$FROM"

#  ---------------------------------------------------------------------
#  --to-ts and --to-head ask the broker

SEVENTH=$(sed -n 7p "$TMP/all" | $PY -c 'import json, sys; e = json.loads(sys.stdin.read()); print(e["seq"], e["ts"])')
SEQ7=${SEVENTH% *}
TS7=${SEVENTH#* }
sub to_ts reset orders --state-dir "$STATE" --to-ts "${TS7}ns" --endpoint "$API" --format json
rc_is to_ts 0
check "--to-ts (the 7th event's ts): done is the seq before it ($((SEQ7 - 1)))" \
    [ "$(json "$TMP/to_ts.out" done)" = "$((SEQ7 - 1))" ]
check "--to-ts: the JSON says the done before ($HEAD) and the next seq ($SEQ7)" \
    [ "$(json "$TMP/to_ts.out" done_before)/$(json "$TMP/to_ts.out" next)" = "$HEAD/$SEQ7" ]
sub to_future reset orders --state-dir "$STATE" --to-ts 2100-01-01 --endpoint "$API" --format json
rc_is to_future 0
check "--to-ts after every event: done is the head ($HEAD)" [ "$(json "$TMP/to_future.out" done)" = "$HEAD" ]
sub to_start reset orders --state-dir "$STATE" --to-start --format json
check "--to-start: done 0" [ "$(json "$TMP/to_start.out" done)" = 0 ]
sub to_head reset orders --state-dir "$STATE" --to-head --endpoint "$API" --format json
rc_is to_head 0
check "--to-head: done is the broker's head ($HEAD)" [ "$(json "$TMP/to_head.out" done)" = "$HEAD" ]

cp "$SUBS/orders.ckpt" "$TMP/before.ckpt"
DEAD=$(free_port)
sub no_broker reset orders --state-dir "$STATE" --to-head --endpoint "tcp://127.0.0.1:$DEAD"
rc_is no_broker 2
says no_broker "nothing listens at tcp://127.0.0.1:$DEAD"
check "no broker: the checkpoint is unchanged" cmp -s "$SUBS/orders.ckpt" "$TMP/before.ckpt"

#  ---------------------------------------------------------------------
#  In doubt: a crash inside a handler

KILL_AT=$(sed -n 3p "$TMP/orders_seqs")
start_agent crash "$TMP/log3" "$KILL_AT"
wait "$AGENT_PID" 2>/dev/null
PREV=$(sed -n 2p "$TMP/orders_seqs")
sub doubt_json show crash --state-dir "$STATE" --format json
CRASH_DONE=$(json "$TMP/doubt_json.out" done)
check "show: the crashed subscription is in doubt, done $PREV .. $((KILL_AT - 1))" \
    bash -c "[ $(json "$TMP/doubt_json.out" in_doubt) = true ] && [ $CRASH_DONE -ge $PREV ] && [ $CRASH_DONE -lt $KILL_AT ]"
sub doubt list --state-dir "$STATE"
rc_is doubt 0
check "list: the crashed subscription's row says it is in doubt" \
    grep -qE "^crash +$CRASH_DONE +0 +yes " "$TMP/doubt.out"
prints doubt "2 subscriptions in $SUBS"
check "list: not in use once the agent died" bash -c "! grep -q 'in use' '$TMP/doubt.out'"
sub doubt_show show crash --state-dir "$STATE"
prints doubt_show "in_doubt   yes"

#  ---------------------------------------------------------------------
#  A corrupt checkpoint: named, with why; left as it is

cp "$SUBS/crash.ckpt" "$SUBS/broken.ckpt"
printf 'XXXXXXXX' | dd of="$SUBS/broken.ckpt" bs=1 seek=0 conv=notrunc 2>/dev/null
cp "$SUBS/broken.ckpt" "$TMP/broken.before"
head -c 100 "$SUBS/crash.ckpt" >"$SUBS/short.ckpt"
sub corrupt_show show broken --state-dir "$STATE"
rc_is corrupt_show 1
says corrupt_show "$SUBS/broken.ckpt: corrupt checkpoint: bad header"
sub corrupt_reset reset broken --state-dir "$STATE" --to-start
rc_is corrupt_reset 1
says corrupt_reset "$SUBS/broken.ckpt: corrupt checkpoint: bad header"
check "a refused reset leaves the corrupt file as it was" cmp -s "$SUBS/broken.ckpt" "$TMP/broken.before"
sub corrupt_list list --state-dir "$STATE"
rc_is corrupt_list 1
says corrupt_list "$SUBS/short.ckpt: corrupt checkpoint: 100 bytes, truncated"
check "list with corrupt files still lists the good ones" grep -qE "^orders +$HEAD " "$TMP/corrupt_list.out"
check "and marks the corrupt ones" grep -qE "^broken +\? +\(unreadable" "$TMP/corrupt_list.out"
sub corrupt_delete delete broken --state-dir "$STATE"
rc_is corrupt_delete 0
prints corrupt_delete "it could not be read: $SUBS/broken.ckpt: corrupt checkpoint: bad header"
check "delete removed the corrupt file" [ ! -e "$SUBS/broken.ckpt" ]
rm -f "$SUBS/short.ckpt"

#  ---------------------------------------------------------------------
#  delete: the next subscribe starts over

sub delete delete crash --state-dir "$STATE"
rc_is delete 0
prints delete "subscription crash deleted from $STATE (it was at done $CRASH_DONE)"
sub after_delete list --state-dir "$STATE" --format json
check "list after delete: only orders" \
    [ "$(json "$TMP/after_delete.out" name)/$(wc -l <"$TMP/after_delete.out")" = orders/1 ]
start_agent crash "$TMP/log4"
check "a subscribe after delete starts from its start: all ten orders events" wait_lines "$TMP/log4" 10
stop_agent
check "none of them flagged redelivered" bash -c "! grep -q ' 1\$' '$TMP/log4'"

#  ---------------------------------------------------------------------
#  Errors

sub missing show nosuch --state-dir "$STATE"
rc_is missing 1
says missing "no subscription 'nosuch' in $STATE (the ones there: crash, orders)"
sub missing_reset reset nosuch --state-dir "$STATE" --to-start
rc_is missing_reset 1
says missing_reset "no subscription 'nosuch'"
sub no_dir list --state-dir "$TMP/nowhere"
rc_is no_dir 1
says no_dir "$TMP/nowhere is not a directory (it does not exist)"
mkdir "$TMP/empty"
sub empty list --state-dir "$TMP/empty"
rc_is empty 0
prints empty "no subscriptions in $TMP/empty/subs"
check "list of a directory no agent used creates nothing there" [ -z "$(ls -A "$TMP/empty")" ]

cp "$SUBS/orders.ckpt" "$TMP/before.ckpt"
for args in "list" "show --state-dir $STATE" "reset orders --state-dir $STATE" \
            "reset orders --state-dir $STATE --to-seq 0" \
            "reset orders --state-dir $STATE --to-seq 3 --to-start" \
            "reset orders --state-dir $STATE --to-ts yesterday-ish" \
            "reset ../x --state-dir $STATE --to-start" "list --state-dir $STATE extra" \
            "frobnicate --state-dir $STATE" "show orders --state-dir $STATE --bogus"; do
    # shellcheck disable=SC2086
    timeout 30 "$HERALD" sub $args >"$TMP/usage.out" 2>"$TMP/usage.err" </dev/null
    rc=$?
    if [ $rc -eq 64 ] && [ "$(wc -l <"$TMP/usage.err")" -eq 1 ] && [ ! -s "$TMP/usage.out" ]; then
        ok "sub $args: exit 64, one line on stderr"
    else
        not_ok "sub $args: exit 64, one line on stderr (got $rc: $(head -c 300 "$TMP/usage.err"))"
    fi
done
check "usage errors changed nothing" cmp -s "$SUBS/orders.ckpt" "$TMP/before.ckpt"

for help in "help sub" "sub -h" "sub reset --help" "sub list -h"; do
    # shellcheck disable=SC2086
    "$HERALD" $help >"$TMP/help.out" 2>&1
    rc=$?
    check "herald $help: exit 0, the usage" \
        bash -c "[ $rc -eq 0 ] && grep -q 'usage: herald sub list --state-dir DIR' '$TMP/help.out'"
done
"$HERALD" --help >"$TMP/help.out"
check "herald --help names sub" grep -q '  sub list|show|reset|delete --state-dir DIR' "$TMP/help.out"

kill -TERM "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null
BROKER_PID=
shtest_done

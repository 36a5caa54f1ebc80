#!/bin/bash
#  =========================================================================
#  test_herald_cli_groups - `herald groups`, `herald group show|reset|delete`
#  against a real heraldd (issue 15)
#
#  Members are real GROUP clients: a small Python member (ZeroMQ DEALER +
#  MessagePack, as docs/protocol.md "Consumer groups" says a third party
#  writes one) that heartbeats, takes what it is assigned, commits once per
#  partition and leaves on SIGTERM.  Checked: the list and the show (table
#  and JSON) say what the broker holds (members, partitions owned without
#  overlap, committed, lag = head - committed); delete is refused while
#  members are live and says so, then done once they left; reset --to-seq
#  and --to-ts say the first seq delivered again and the members fenced,
#  and the positions are there; a broker without GROUP (before issue 15,
#  played by a Python ROUTER that answers unknown_command as such a broker
#  does) is said as such; no broker is exit 2; usage errors are exit 64 with
#  nothing sent; with a real 3-node cluster (when heraldd has --peer), a
#  follower's not_leader is followed to the leader.
#
#  Ports are free ones; every wait is a bounded poll; the EXIT trap kills
#  what the test started and removes the temporary directory.  The last line
#  is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_cli_groups

#  json_check FILE EXPR: EXPR true of o, the JSON object in FILE
json_check () {
    $PY -c 'import json, sys
try:
    o = json.loads(open(sys.argv[1]).read())
except ValueError:
    sys.exit(1)
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}
#  jv FILE EXPR: print EXPR of o
jv () {
    $PY -c 'import json, sys
o = json.loads(open(sys.argv[1]).read())
print(eval(sys.argv[2]))' "$1" "$2"
}
#  run NAME ARGS...: herald --endpoint $API ARGS (a later --endpoint wins),
#  stdout/stderr/exit status in $TMP/NAME.{out,err,rc}
run () {
    local name=$1
    shift
    timeout 60 "$HERALD" --endpoint "$API" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null
    echo $? >"$TMP/$name.rc"
}
rc_is () { check "$1: exit $2 ($(head -1 "$TMP/$1.err" | head -c 200))" [ "$(cat "$TMP/$1.rc")" = "$2" ]; }
says () { check "$1 says '$2'" grep -qF -- "$2" "$TMP/$1.err"; }
prints () { check "$1 prints '$2'" grep -qF -- "$2" "$TMP/$1.out"; }
#  wait_for SECONDS COMMAND...: until COMMAND succeeds (polled every 0.1 s),
#  for at most SECONDS (and 1000 tries)
wait_for () {
    local until=$((SECONDS + $1))
    shift
    for _ in $(seq 1 1000); do
        "$@" && return 0
        [ "$SECONDS" -lt "$until" ] || return 1
        sleep 0.1
    done
    return 1
}

#  The member: heartbeats every 200 ms, owns what it is assigned (so a
#  revoked partition is let go at the next heartbeat), commits COMMIT for a
#  partition the first time it is granted it (never again: a reset's
#  positions stay as the reset made them), leaves on SIGTERM.  With a
#  secret key file and the broker's public cert, over CURVE.
cat >"$TMP/member.py" <<'EOF'
import msgpack, signal, sys, time, zmq
api, group, member, partitions, commit = sys.argv[1:6]
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
ctx = zmq.Context()
sock = ctx.socket(zmq.DEALER)
sock.setsockopt(zmq.LINGER, 0)
def z85(path, name):
    for line in open(path):
        if line.strip().startswith(name):
            return line.split("=", 1)[1].strip().strip('"').encode()
if len(sys.argv) > 7:                   #  CURVE: our secret file, the broker's public
    sock.curve_publickey = z85(sys.argv[6], "public-key")
    sock.curve_secretkey = z85(sys.argv[6], "secret-key")
    sock.curve_serverkey = z85(sys.argv[7], "public-key")
sock.connect(api)
rid = 0
def ask(body):
    global rid
    rid += 1
    body["rid"] = rid
    body["group"] = group
    body["member"] = member
    sock.send_multipart([b"GROUP", msgpack.packb(body)])
    while sock.poll(5000):
        cmd, raw = sock.recv_multipart()
        reply = msgpack.unpackb(raw)
        if reply.get("rid") == rid:
            return cmd, reply
    sys.exit("%s: no answer" % member)
owned, committed = [], set()
while not stop:
    cmd, reply = ask({"op": "heartbeat", "prefixes": ["orders."], "owned": owned,
                      "partitions": int(partitions)})
    if cmd != b"GROUP":
        sys.exit("%s: %r" % (member, reply))
    owned = [[a["partition"], a["epoch"]] for a in reply["assigned"]]
    todo = [[p, e, int(commit), int(commit)] for p, e in owned if p not in committed]
    if todo:
        cmd, reply = ask({"op": "commit", "positions": todo})
        committed.update(p for p, e, c, d in todo)
    time.sleep(0.2)
ask({"op": "leave"})
EOF

API_PORT=$(free_port)
FANOUT_PORT=$(free_port)
while [ "$FANOUT_PORT" = "$API_PORT" ]; do FANOUT_PORT=$(free_port); done
API=tcp://127.0.0.1:$API_PORT
H=("$HERALD" --endpoint "$API")

"$HERALDD" --data-dir "$TMP/data" --api "$API" --fanout "tcp://127.0.0.1:$FANOUT_PORT" \
    >"$TMP/heraldd.log" 2>&1 &
BROKER_PID=$!
if ! wait_for 10 "${H[@]}" --timeout 200 status >/dev/null 2>&1; then
    echo "not ok - heraldd did not answer STATUS; its log:"
    sed 's/^/#   /' "$TMP/heraldd.log"
    echo "0 passed, 1 failed"
    exit 1
fi

#  Twelve events, each its own PUBLISH (their ts differ)
for n in $(seq 1 12); do
    if [ $((n % 3)) -eq 0 ]; then topic=other.$n; else topic=orders.$n; fi
    "${H[@]}" pub "$topic" "event $n" >/dev/null || not_ok "pub $topic"
done
"${H[@]}" replay >"$TMP/all"
HEAD=$(wc -l <"$TMP/all")
check "twelve events stored" [ "$HEAD" -eq 12 ]

#  ---------------------------------------------------------------------
#  No groups yet

run none groups
rc_is none 0
prints none "no groups (the broker's head is $HEAD)"
run none_json groups --format json
check "groups --format json: the reply without rid (head, groups [])" \
    json_check "$TMP/none_json.out" 'o == {"op": "list", "head": '"$HEAD"', "groups": []}'
run unknown group show billing
rc_is unknown 1
says unknown "herald: bad_request: no group 'billing'"

#  ---------------------------------------------------------------------
#  Two members

COMMIT=10
member () {
    $PY "$TMP/member.py" "$API" billing "$1" 8 "$COMMIT" 2>"$TMP/$1.err" &
    PIDS+=($!)
    eval "PID_$1=$!"
}
member m1
member m2
settled () {
    run settle --timeout 1000 group show billing --format json
    json_check "$TMP/settle.out" 'len(o["members"]) == 2 and all(p["owner"] in ("m1", "m2") and p["committed"] == '"$COMMIT"' for p in o["positions"]) and sorted(p for m in o["members"] for p in m["partitions"]) == list(range(8)) and all(len(m["partitions"]) == 4 for m in o["members"])'
}
check "two members hold 4 of the 8 partitions each, all committed at $COMMIT" wait_for 20 settled

run list groups
rc_is list 0
check "groups: the header" grep -qE '^NAME +PARTITIONS +MEMBERS +COMMITTED +LAG +PREFIXES$' "$TMP/list.out"
check "groups: billing, 8 partitions, 2 members, committed $COMMIT, lag $((HEAD - COMMIT)), orders." \
    grep -qE "^billing +8 +2 +$COMMIT +$((HEAD - COMMIT)) +orders\.$" "$TMP/list.out"
prints list "1 group; the broker's head is $HEAD"
run list_json groups --format json
check "groups --format json: the same figures" \
    json_check "$TMP/list_json.out" 'o["head"] == '"$HEAD"' and [(g["group"], g["partitions"], g["members"], g["committed"], g["lag"], g["prefixes"]) for g in o["groups"]] == [("billing", 8, 2, '"$COMMIT"', '"$((HEAD - COMMIT))"', ["orders."])]'

#  The table and the JSON of one state: a JSON before and after the table
#  that agree (but for seen_ms)
same_state () {
    $PY -c 'import json, sys
def load(f):
    o = json.loads(open(f).read())
    for m in o["members"]: m.pop("seen_ms", None)
    return o
sys.exit(0 if load(sys.argv[1]) == load(sys.argv[2]) else 1)' "$1" "$2" 2>/dev/null
}
for _ in $(seq 1 20); do
    run show_json group show billing --format json
    run show group show billing
    run show_json2 group show billing --format json
    same_state "$TMP/show_json.out" "$TMP/show_json2.out" && break
    sleep 0.2
done
rc_is show 0
for line in "group       billing" "prefixes    orders." "partitions  8" "session_ms  3000" \
            "head        $HEAD" "committed   $COMMIT (lag $((HEAD - COMMIT)))" "2 members"; do
    prints show "$line"
done
check "show: a created time in RFC 3339" grep -qE '^created +20[0-9-]+T[0-9:.]+Z$' "$TMP/show.out"
#  Each member's row: its partitions as ranges, as the JSON lists them
ranges () {
    $PY -c 'import json, sys
o = json.loads(open(sys.argv[1]).read())
m = [m for m in o["members"] if m["member"] == sys.argv[2]][0]
ps, out, i = sorted(m["partitions"]), [], 0
while i < len(ps):
    j = i
    while j + 1 < len(ps) and ps[j + 1] == ps[j] + 1: j += 1
    out.append(str(ps[i]) if i == j else "%d-%d" % (ps[i], ps[j])); i = j + 1
print(",".join(out) or "-")' "$1" "$2"
}
for m in m1 m2; do
    check "show: $m's row (partitions $(ranges "$TMP/show_json.out" $m), committed $COMMIT, lag $((HEAD - COMMIT)))" \
        grep -qE "^$m +$(ranges "$TMP/show_json.out" $m) +$COMMIT +$((HEAD - COMMIT)) +[0-9]+$" "$TMP/show.out"
done
check "show: the partition table's header and 8 rows, each with its owner" \
    $PY -c 'import json, re, sys
o = json.loads(open(sys.argv[1]).read())
text = open(sys.argv[2]).read().splitlines()
head = [i for i, l in enumerate(text) if re.match(r"^PARTITION +COMMITTED +DELIVERED +EPOCH +OWNER$", l)]
rows = [l.split() for l in text[head[0] + 1:]]
want = [[str(p["partition"]), str(p["committed"]), str(p["delivered"]), str(p["epoch"]), p["owner"]] for p in o["positions"]]
sys.exit(0 if rows == want and len(rows) == 8 else 1)' "$TMP/show_json.out" "$TMP/show.out"
check "show --format json: the reply without rid" \
    json_check "$TMP/show_json.out" '"rid" not in o and o["group"] == "billing" and o["partitions"] == 8 and o["prefixes"] == ["orders."] and len(o["positions"]) == 8'

#  ---------------------------------------------------------------------
#  delete refused while members are live

run delete_live group delete billing
rc_is delete_live 1
says delete_live "herald: bad_request: group 'billing' has 2 members; stop them first"
says delete_live "group delete: refused while the group has live members"
run still groups --format json
check "... and the group is still there" json_check "$TMP/still.out" 'len(o["groups"]) == 1'

#  ---------------------------------------------------------------------
#  reset

run reset_seq group reset billing --to-seq 3
rc_is reset_seq 0
prints reset_seq "group billing reset: delivery starts again at seq 3 (every partition's committed is now 2); 2 members fenced"
run after_reset group show billing --format json
check "after reset --to-seq 3: every partition at committed 2, delivered 2" \
    json_check "$TMP/after_reset.out" 'all(p["committed"] == 2 and p["delivered"] == 2 for p in o["positions"])'

SEVENTH=$(sed -n 7p "$TMP/all" | $PY -c 'import json, sys; e = json.loads(sys.stdin.read()); print(e["seq"], e["ts"])')
SEQ7=${SEVENTH% *}
TS7=${SEVENTH#* }
run reset_ts group reset billing --to-ts "${TS7}ns" --format json
rc_is reset_ts 0
check "reset --to-ts (the 7th event's ts) --format json: to $SEQ7" \
    json_check "$TMP/reset_ts.out" 'o["to"] == '"$SEQ7"' and o["op"] == "reset" and o["group"] == "billing" and "fenced" in o'
run after_ts group show billing --format json
check "... every partition at committed $((SEQ7 - 1))" \
    json_check "$TMP/after_ts.out" 'all(p["committed"] == '"$((SEQ7 - 1))"' for p in o["positions"])'
run reset_future group reset billing --to-ts 2100-01-01
rc_is reset_future 0
prints reset_future "delivery starts again at seq $((HEAD + 1))"

#  ---------------------------------------------------------------------
#  Members leave; delete

kill -TERM "$PID_m1" "$PID_m2"
wait "$PID_m1" "$PID_m2" 2>/dev/null
run gone groups --format json
check "the members left" json_check "$TMP/gone.out" 'o["groups"][0]["members"] == 0'
run delete group delete billing
rc_is delete 0
prints delete "group billing deleted"
run after_delete groups
prints after_delete "no groups"
run delete_again group delete billing
rc_is delete_again 1
says delete_again "no group 'billing'"

#  ---------------------------------------------------------------------
#  Usage errors: exit 64, one line, nothing sent (no broker needed)

DEAD=$(free_port)
for args in "group frob billing" "group show" "group show .hidden" "group show a/b" \
            "group show billing extra" "group reset billing" "group reset billing --to-seq 0" \
            "group reset billing --to-seq 3 --to-ts -1h" "group reset billing --to-ts soon" \
            "group delete billing --to-seq 3" "groups extra" "groups --bogus"; do
    # shellcheck disable=SC2086
    timeout 30 "$HERALD" --endpoint "tcp://127.0.0.1:$DEAD" $args >"$TMP/usage.out" 2>"$TMP/usage.err" </dev/null
    rc=$?
    if { [ $rc -eq 64 ] && [ ! -s "$TMP/usage.out" ] && [ "$(wc -l <"$TMP/usage.err")" -le 12 ]; } \
       && { [ "$args" = group ] || [ "$(wc -l <"$TMP/usage.err")" -eq 1 ]; }; then
        ok "$args: exit 64"
    else
        not_ok "$args: exit 64, one line on stderr (got $rc: $(head -c 300 "$TMP/usage.err"))"
    fi
done
run no_broker --endpoint "tcp://127.0.0.1:$DEAD" groups
rc_is no_broker 2
says no_broker "nothing listens at tcp://127.0.0.1:$DEAD"

for help in "help groups" "help group" "group -h" "groups --help" "group reset --help"; do
    # shellcheck disable=SC2086
    "$HERALD" $help >"$TMP/help.out" 2>&1
    rc=$?
    check "herald $help: exit 0, the usage" \
        bash -c "[ $rc -eq 0 ] && grep -q 'usage: herald groups \[--format table|json\]' '$TMP/help.out'"
done
"$HERALD" --help >"$TMP/help.out"
check "herald --help names groups and group" \
    bash -c "grep -q '^  groups ' '$TMP/help.out' && grep -q '^  group show|reset|delete NAME' '$TMP/help.out'"

#  ---------------------------------------------------------------------
#  Security: --key/--server-key on every request; list filtered to what
#  the key reads; reset and delete need admin = groups

KEYS=$TMP/keys
mkdir -p "$KEYS"
keygen () {
    "$HERALD" keygen "$1" --dir "$KEYS" >/dev/null && "$HERALD" keygen --show "$KEYS/$1.key"
}
BROKER_KEY=$(keygen broker)
check "the keys are made" test ${#BROKER_KEY} -eq 40
#  Four distinct free ports: api, fanout, and the two scopes' fanouts
SPORTS=()
while [ ${#SPORTS[@]} -lt 4 ]; do
    port=$(free_port)
    case " ${SPORTS[*]} " in *" $port "*) ;; *) SPORTS+=("$port") ;; esac
done
SAPI=tcp://127.0.0.1:${SPORTS[0]}
SFANOUT=tcp://127.0.0.1:${SPORTS[1]}
cat >"$TMP/acl" <<EOF
[scope orders-view]
read = orders.
fanout = tcp://127.0.0.1:${SPORTS[2]}

[scope stock-view]
read = stock.
fanout = tcp://127.0.0.1:${SPORTS[3]}

[user ops]
key = $(keygen ops)
read = *
admin = groups

[user reader]
key = $(keygen reader)
scope = orders-view

[user stranger]
key = $(keygen stranger)
scope = stock-view
EOF
chmod 600 "$TMP/acl"
"$HERALDD" --data-dir "$TMP/secure" --api "$SAPI" --fanout "$SFANOUT" \
    --curve-secret "$KEYS/broker.key_secret" --acl "$TMP/acl" >"$TMP/secure.log" 2>&1 &
PIDS+=($!)
#  as USER: the options of USER's key at the secure broker
as () { echo --endpoint "$SAPI" --key "$KEYS/$1.key_secret" --server-key "@$KEYS/broker.key"; }
secure_up () { "$HERALD" $(as ops) --timeout 300 status >/dev/null 2>&1; }
check "a broker with security on answers" wait_for 15 secure_up
$PY "$TMP/member.py" "$SAPI" vault s1 4 1 "$KEYS/ops.key_secret" "$KEYS/broker.key" 2>"$TMP/s1.err" &
PIDS+=($!)
SPID=$!
has_vault () {
    run sgroups $(as ops) --timeout 1000 groups --format json
    json_check "$TMP/sgroups.out" '[(g["group"], g["members"]) for g in o["groups"]] == [("vault", 1)]'
}
check "a member over CURVE makes the group; ops (read *) lists it" wait_for 15 has_vault
run splain --timeout 1000 --endpoint "$SAPI" groups
check "no key at the secure broker: refused, said (exit $(cat "$TMP/splain.rc"))" \
    bash -c "[ $(cat "$TMP/splain.rc") = 1 ] && grep -q 'requires CURVE' '$TMP/splain.err'"
run sreader $(as reader) groups
check "reader (read orders.) lists it too" grep -qE '^vault +4 +1 ' "$TMP/sreader.out"
run sreader_show $(as reader) group show vault
rc_is sreader_show 0
run sreader_reset $(as reader) group reset vault --to-seq 1
rc_is sreader_reset 1
says sreader_reset "herald: unauthorized: "
run sreader_delete $(as reader) group delete vault
rc_is sreader_delete 1
says sreader_delete "herald: unauthorized: "
run sstranger $(as stranger) groups
rc_is sstranger 0
prints sstranger "no groups"
run sstranger_show $(as stranger) group show vault
rc_is sstranger_show 1
says sstranger_show "herald: unauthorized: "
run sops_reset $(as ops) group reset vault --to-seq 1
rc_is sops_reset 0
prints sops_reset "group vault reset: delivery starts again at seq 1"
kill -TERM "$SPID"
wait "$SPID" 2>/dev/null

#  ---------------------------------------------------------------------
#  A broker from before GROUP answers unknown_command (played by a ROUTER
#  that answers every command as heraldd answers one it does not know)

OLD_PORT=$(free_port)
cat >"$TMP/old.py" <<'EOF'
import msgpack, sys, zmq
sock = zmq.Context().socket(zmq.ROUTER)
sock.bind("tcp://127.0.0.1:%s" % sys.argv[1])
print("ready", flush=True)
while sock.poll(30000):
    frames = sock.recv_multipart()
    body = msgpack.unpackb(frames[2])
    sock.send_multipart([frames[0], b"ERROR", msgpack.packb(
        {"rid": body.get("rid"), "code": "unknown_command", "message": "unknown command"})])
EOF
$PY "$TMP/old.py" "$OLD_PORT" >"$TMP/old.out" 2>&1 &
PIDS+=($!)
wait_for 10 grep -q ready "$TMP/old.out"
run old --endpoint "tcp://127.0.0.1:$OLD_PORT" groups
rc_is old 1
says old "herald: this broker does not support consumer groups (HWP/1 GROUP): upgrade it"
run old_reset --endpoint "tcp://127.0.0.1:$OLD_PORT" group reset billing --to-seq 1
rc_is old_reset 1
says old_reset "does not support consumer groups"

kill -TERM "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null
BROKER_PID=

#  ---------------------------------------------------------------------
#  A real cluster: a follower's not_leader is followed to the leader

if ! "$HERALDD" --help | grep -q -- "--peer"; then
    echo "# skip: this heraldd has no --peer (no cluster)"
    shtest_done
fi
shtest_cluster_start
CLUSTER=":${PORTS[0]},:${PORTS[3]},:${PORTS[6]}"
one_leader () {
    "$HERALD" cluster status --endpoint "$CLUSTER" --format json --timeout 1000 \
        >"$TMP/up.json" 2>/dev/null
}
check "a 3-node cluster elects a leader" wait_for 30 one_leader
LEADER_API=$(jv "$TMP/up.json" '[n["endpoint"] for n in o["nodes"] if n["node"] == o["leader"]][0]')
FOLLOWER_API=$(jv "$TMP/up.json" '[n["endpoint"] for n in o["nodes"] if n["node"] != o["leader"]][0]')
"$HERALD" --endpoint "$LEADER_API" pub orders.1 x >/dev/null
#  A new leader serves GROUP once it has applied its term's first entry
leader_serves () { "$HERALD" --endpoint "$LEADER_API" --timeout 1000 groups >/dev/null 2>&1; }
check "the leader serves GROUP" wait_for 20 leader_serves
$PY "$TMP/member.py" "$LEADER_API" ledger c1 4 1 2>"$TMP/c_member.err" &
PIDS+=($!)
CPID=$!
cluster_group () {
    run cgroups --endpoint "$FOLLOWER_API" --timeout 1000 groups --format json
    json_check "$TMP/cgroups.out" '[(g["group"], g["members"]) for g in o["groups"]] == [("ledger", 1)]'
}
check "groups asked of a follower ($FOLLOWER_API) answers from the leader" wait_for 20 cluster_group
run cshow --endpoint "$FOLLOWER_API" group show ledger
rc_is cshow 0
prints cshow "group       ledger"
run creset --endpoint "$FOLLOWER_API" group reset ledger --to-seq 1
rc_is creset 0
prints creset "group ledger reset: delivery starts again at seq 1"
kill -TERM "$CPID"
wait "$CPID" 2>/dev/null

shtest_done

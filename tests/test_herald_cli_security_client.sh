#!/bin/bash
#  =========================================================================
#  test_herald_cli_security_client - the herald tool with CURVE keys
#
#  Against real heraldd processes: one with security off, one with
#  --curve-secret and --acl (keys made here by `herald keygen`, which
#  writes zcert files, secrets 0600).  --key /
#  --server-key (KEY and @FILE) and HERALD_KEY / HERALD_SERVER_KEY reach
#  the broker; whoami prints the user, scope, prefixes, admin and
#  acl_version (a publish-only key's scope as "-"), and "security is off"
#  against a plain broker; a tail whose key a reload revokes says so; a key the
#  broker refuses, a broker key that is not the broker's, a client without
#  a key at a secure broker and a key at a plain one are each named at
#  once (not after --timeout) and exit 1; a publish outside the grants is
#  `herald: unauthorized: ...`; bad key options are usage errors (64)
#  found before anything is sent.  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_cli_security_client

#  timed FILE COMMAND...: run COMMAND (stdout and stderr to FILE), set
#  $rc and $ms (how long it took)
timed () {
    local file=$1 start
    shift
    start=$(now_ms)
    "$@" >"$file" 2>&1
    rc=$?
    ms=$(($(now_ms) - start))
}

KEYS=$TMP/keys
mkdir -p "$KEYS"
#  keygen NAME: KEYS/NAME.key and KEYS/NAME.key_secret (0600, zcert_save,
#  by herald keygen); prints the public key
keygen () {
    "$HERALD" keygen "$1" --dir "$KEYS" >/dev/null && "$HERALD" keygen --show "$KEYS/$1.key"
}
BROKER_KEY=$(keygen broker)
ALICE_KEY=$(keygen alice)
CAROL_KEY=$(keygen carol)
AUDIT_KEY=$(keygen audit)
keygen bob >/dev/null
OTHER_KEY=$(keygen other)
check "the keys are made" test -s "$KEYS/alice.key_secret" -a -s "$KEYS/broker.key" \
    -a ${#ALICE_KEY} -eq 40 -a ${#OTHER_KEY} -eq 40

port () { local p; p=$(free_port); while grep -qx "$p" "$TMP/ports" 2>/dev/null; do
          p=$(free_port); done; echo "$p" >>"$TMP/ports"; echo "$p"; }
API=tcp://127.0.0.1:$(port)
FANOUT=tcp://127.0.0.1:$(port)
SCOPE_FANOUT=tcp://127.0.0.1:$(port)
PLAIN_API=tcp://127.0.0.1:$(port)
PLAIN_FANOUT=tcp://127.0.0.1:$(port)

cat >"$TMP/acl" <<EOF
[scope orders-view]
read = orders.
fanout = $SCOPE_FANOUT

[user alice]
key = $ALICE_KEY
read = *
publish = orders. stock.
admin = status

[user carol]
key = $CAROL_KEY
scope = orders-view
publish = orders.

[user audit]
key = $AUDIT_KEY
publish = audit.
EOF
chmod 600 "$TMP/acl"

A=(--key "$KEYS/alice.key_secret" --server-key "@$KEYS/broker.key")

#  The secure broker, and a plain one beside it
"$HERALDD" --data-dir "$TMP/data" --api "$API" --fanout "$FANOUT" \
    --curve-secret "$KEYS/broker.key_secret" --acl "$TMP/acl" \
    --audit-log "$TMP/audit.log" >>"$TMP/heraldd.log" 2>&1 &
BROKER_PID=$!
"$HERALDD" --data-dir "$TMP/plain" --api "$PLAIN_API" --fanout "$PLAIN_FANOUT" \
    >>"$TMP/plain.log" 2>&1 &
PIDS+=($!)
up=no
for _ in $(seq 1 150); do
    if "$HERALD" --endpoint "$API" "${A[@]}" --timeout 300 status >/dev/null 2>&1 \
    && "$HERALD" --endpoint "$PLAIN_API" --timeout 300 status >/dev/null 2>&1; then
        up=yes
        break
    fi
    sleep 0.1
done
check "both brokers answer STATUS (the secure one to alice's key)" test $up = yes
if [ $up != yes ]; then
    tail -20 "$TMP/heraldd.log"
    shtest_done
fi

#  ---------------------------------------------------------------------
#  whoami

timed "$TMP/whoami" "$HERALD" --endpoint "$API" "${A[@]}" whoami
check "whoami with alice's key exits 0" test $rc -eq 0
check "... prints the user" grep -Eq '^user +alice$' "$TMP/whoami"
check "... its scope (read-all)" grep -Eq '^scope +\*' "$TMP/whoami"
check "... its publish prefixes" grep -Eq '^publish +orders\. stock\.$' "$TMP/whoami"
check "... its admin grants" grep -Eq '^admin +status$' "$TMP/whoami"
check "... the ACL version (12 hex digits)" grep -Eq '^acl_version +[0-9a-f]{12}$' \
    "$TMP/whoami"

timed "$TMP/whoami-json" "$HERALD" --endpoint "$API" "${A[@]}" whoami --format json
check "whoami --format json is one JSON object with user and read" $PY -c '
import json, sys
o = json.load(open(sys.argv[1]))
assert o["user"] == "alice" and o["read"] == ["*"] and len(o["acl_version"]) == 12, o
' "$TMP/whoami-json"

timed "$TMP/whoami-env" env HERALD_KEY="$KEYS/carol.key_secret" \
    HERALD_SERVER_KEY="$BROKER_KEY" "$HERALD" --endpoint "$API" whoami
check "HERALD_KEY and HERALD_SERVER_KEY (a Z85 key) are taken" test $rc -eq 0
check "... carol is in scope orders-view" grep -Eq '^scope +orders-view$' "$TMP/whoami-env"
check "... reads orders." grep -Eq '^read +orders\.$' "$TMP/whoami-env"

timed "$TMP/whoami-opt" env HERALD_KEY="$KEYS/carol.key_secret" \
    HERALD_SERVER_KEY="$OTHER_KEY" "$HERALD" --endpoint "$API" whoami \
    --key "$KEYS/alice.key_secret" --server-key "$BROKER_KEY"
check "--key and --server-key (after the command) win over the environment" \
    grep -Eq '^user +alice$' "$TMP/whoami-opt"

timed "$TMP/whoami-plain" "$HERALD" --endpoint "$PLAIN_API" whoami
check "whoami against a plain broker exits 0" test $rc -eq 0
check "... saying security is off" grep -q "security is off" "$TMP/whoami-plain"

#  ---------------------------------------------------------------------
#  Refusals, named at once.  "At once" is measured against the option's
#  own value: under a --timeout of $LONG ms, an answer in less than half of
#  it did not wait for the timeout, however loaded (or sanitized) the
#  machine is

LONG=20000
timed "$TMP/unknown" "$HERALD" --timeout $LONG --endpoint "$API" --key "$KEYS/bob.key_secret" \
    --server-key "$BROKER_KEY" status
check "a key the ACL does not know exits 1 (took $ms ms)" test $rc -eq 1
check "... at once, not after the $LONG ms --timeout" test $ms -lt $((LONG / 2))
check "... saying the broker refused this key" \
    grep -q "herald: the broker at $API refused this key (unknown, revoked or expired)" \
    "$TMP/unknown"

timed "$TMP/wrong-server" "$HERALD" --timeout $LONG --endpoint "$API" --key "$KEYS/alice.key_secret" \
    --server-key "$OTHER_KEY" status
check "a --server-key that is not the broker's exits 1 (took $ms ms)" test $rc -eq 1
check "... at once" test $ms -lt $((LONG / 2))
check "... saying the broker did not prove that key" \
    grep -q "the broker at $API did not prove the key given by --server-key" \
    "$TMP/wrong-server"

timed "$TMP/rotation" "$HERALD" --endpoint "$API" --key "$KEYS/alice.key_secret" \
    --server-key "$OTHER_KEY,$BROKER_KEY" status
check "--server-key NEW,OLD: the key the broker proves is taken (rc $rc)" test $rc -eq 0
timed "$TMP/rotation-env" env HERALD_KEY="$KEYS/alice.key_secret" \
    HERALD_SERVER_KEY="$OTHER_KEY,@$KEYS/broker.key" "$HERALD" --endpoint "$API" whoami
check "... from HERALD_SERVER_KEY too, with @FILE in the list" grep -Eq '^user +alice$' \
    "$TMP/rotation-env"

timed "$TMP/no-key" "$HERALD" --timeout $LONG --endpoint "$API" status
check "no key at a secure broker exits 1 at once (took $ms ms)" \
    test $rc -eq 1 -a $ms -lt $((LONG / 2))
check "... saying it requires CURVE and naming the options" \
    grep -q "requires CURVE: give --key FILE and --server-key" "$TMP/no-key"
#  The handshake fails in two ways (either side may close first): each run
#  must say the same
said=0
for _ in 1 2 3 4 5 6 7 8; do
    "$HERALD" --endpoint "$API" status 2>&1 | grep -q "requires CURVE" && said=$((said + 1))
    "$HERALD" --endpoint "$PLAIN_API" "${A[@]}" status 2>&1 | grep -q "does not speak CURVE" \
        && said=$((said + 1))
done
check "... every time, and a key at a plain broker too ($said of 16)" test $said -eq 16

timed "$TMP/key-plain" "$HERALD" --timeout $LONG --endpoint "$PLAIN_API" "${A[@]}" status
check "a key at a plain broker exits 1 at once (took $ms ms)" \
    test $rc -eq 1 -a $ms -lt $((LONG / 2))
#  (libzmq reports either side's close without detail: the tool reads the
#  broker's ZMTP greeting to tell a plain broker from another key)
check "... saying it does not speak CURVE" grep -q "does not speak CURVE" "$TMP/key-plain"

timed "$TMP/pub-denied" "$HERALD" --endpoint "$API" "${A[@]}" pub billing.1 '{}'
check "pub outside the grants exits 1" test $rc -eq 1
check "... as herald: unauthorized: ..." grep -q "^herald: unauthorized: " "$TMP/pub-denied"
timed "$TMP/pub-ok" "$HERALD" --endpoint "$API" "${A[@]}" pub orders.1 '{"n":1}'
check "pub inside the grants exits 0" test $rc -eq 0

timed "$TMP/read-denied" "$HERALD" --endpoint "$API" --key "$KEYS/carol.key_secret" \
    --server-key "$BROKER_KEY" read stock.1
check "read outside the read set is herald: unauthorized (rc $rc)" \
    grep -q "^herald: unauthorized: " "$TMP/read-denied"

timed "$TMP/tail-pubonly" "$HERALD" --timeout $LONG --endpoint "$API" \
    --key "$KEYS/audit.key_secret" --server-key "$BROKER_KEY" tail
check "tail with a publish-only key exits 1 at once (took $ms ms)" \
    test $rc -eq 1 -a $ms -lt $((LONG / 2))
check "... as unauthorized: no fanout for this key" \
    grep -q "unauthorized: .*names no fanout for this key" "$TMP/tail-pubonly"

timed "$TMP/tail-scoped" "$HERALD" --endpoint "$API" --key "$KEYS/carol.key_secret" \
    --server-key "$BROKER_KEY" tail orders. --from 1 --max 1
check "tail with a scoped key catches up through its scope (rc $rc)" test $rc -eq 0
check "... printing orders.1" grep -q '"topic":"orders.1"' "$TMP/tail-scoped"
#  Everything the key reads (""): the scope's seqs skip the others' (stock.1
#  between), which is no loss on a scoped fanout
"$HERALD" --endpoint "$API" "${A[@]}" pub stock.1 '{}' >/dev/null 2>&1
"$HERALD" --endpoint "$API" "${A[@]}" pub orders.2 '{}' >/dev/null 2>&1
timed "$TMP/tail-scoped-all" "$HERALD" --endpoint "$API" --key "$KEYS/carol.key_secret" \
    --server-key "$BROKER_KEY" tail --from 1 --max 2
check "tail \"\" with a scoped key prints its scope's events only (rc $rc)" $PY -c '
import json, sys
topics = [json.loads(line)["topic"] for line in open(sys.argv[1]) if line.startswith("{")]
assert topics == ["orders.1", "orders.2"], topics
' "$TMP/tail-scoped-all"

timed "$TMP/whoami-pubonly" "$HERALD" --endpoint "$API" --key "$KEYS/audit.key_secret" \
    --server-key "$BROKER_KEY" whoami
check "whoami of a publish-only key says it reads nothing (not read-all)" \
    grep -Eq '^scope +- \(reads nothing' "$TMP/whoami-pubonly"

#  A tail whose key an ACL reload revokes loses its fanout connection (the
#  scope's socket is re-bound), is refused when it reconnects, and says why
"$HERALD" --endpoint "$API" --key "$KEYS/carol.key_secret" --server-key "$BROKER_KEY" \
    tail orders. --from 1 >"$TMP/tail-revoked" 2>&1 &
TAIL_PID=$!
PIDS+=($TAIL_PID)
for _ in $(seq 1 100); do
    grep -q '"topic":"orders.2"' "$TMP/tail-revoked" && break
    sleep 0.1
done
sed -i '/^\[user carol\]/,/^$/d' "$TMP/acl"
kill -HUP $BROKER_PID
for _ in $(seq 1 100); do
    kill -0 $TAIL_PID 2>/dev/null || break
    sleep 0.1
done
kill $TAIL_PID 2>/dev/null
wait $TAIL_PID
rc=$?
check "a tail whose key is revoked exits 1 (rc $rc)" test $rc -eq 1
check "... saying the broker refused this key" \
    grep -q "^herald: the broker at .* refused this key (unknown, revoked or expired)" \
    "$TMP/tail-revoked"

#  ---------------------------------------------------------------------
#  Bad key options: usage errors, nothing sent

cp "$KEYS/alice.key_secret" "$TMP/open.key_secret"
chmod 644 "$TMP/open.key_secret"
timed "$TMP/open" "$HERALD" --endpoint "$API" --key "$TMP/open.key_secret" \
    --server-key "$BROKER_KEY" status
check "a secret readable by others exits 64" test $rc -eq 64
check "... naming --key and the mode" grep -q "herald: --key: .*group or others (mode 0644)" \
    "$TMP/open"

timed "$TMP/open-env" env HERALD_KEY="$TMP/open.key_secret" HERALD_SERVER_KEY="$BROKER_KEY" \
    "$HERALD" --endpoint "$API" status
check "... from HERALD_KEY, naming the variable" grep -q "herald: HERALD_KEY: " "$TMP/open-env"

timed "$TMP/public" "$HERALD" --endpoint "$API" --key "$KEYS/alice.key" \
    --server-key "$BROKER_KEY" status
check "a public cert given as --key exits 64, saying it holds no secret" \
    grep -q "holds no secret key" "$TMP/public"

timed "$TMP/bad-server" "$HERALD" --endpoint "$API" "${A[0]}" "${A[1]}" \
    --server-key "not-a-key" status
check "a --server-key that is not a key exits 64" test $rc -eq 64
check "... naming --server-key" grep -q "herald: --server-key: .*neither a Z85 public key" \
    "$TMP/bad-server"

timed "$TMP/half" "$HERALD" --endpoint "$API" --key "$KEYS/alice.key_secret" status
check "--key without --server-key exits 64 (rc $rc)" test $rc -eq 64
check "... saying the broker's key is needed" \
    grep -q "herald: --key is given without --server-key (or HERALD_SERVER_KEY)" "$TMP/half"
timed "$TMP/half-env" env HERALD_SERVER_KEY="$BROKER_KEY" "$HERALD" --endpoint "$API" status
check "HERALD_SERVER_KEY alone exits 64, naming it (rc $rc)" \
    grep -q "herald: HERALD_SERVER_KEY is given without --key (or HERALD_KEY)" "$TMP/half-env"

#  ---------------------------------------------------------------------
#  Help

"$HERALD" --help >"$TMP/help"
check "herald --help names --key, --server-key and whoami" \
    grep -q -- "--key FILE" "$TMP/help"
check "... --server-key" grep -q -- "--server-key" "$TMP/help"
check "... whoami" grep -q "whoami" "$TMP/help"
"$HERALD" help whoami >"$TMP/help-whoami"
check "herald help whoami prints its usage" grep -q "usage: herald whoami" "$TMP/help-whoami"

shtest_done

#!/bin/bash
#  =========================================================================
#  test_herald_trim_security - herald trim with security on (issue 17)
#
#  A real heraldd with CURVE keys and an ACL: a user without the grant
#  `admin = trim` is refused (exit 1, `herald: unauthorized: ...`, with an
#  archive's proof and unarchived alike) and nothing is trimmed; a user
#  with it archives (read = *) and trims, and every user reads STATUS
#  first and trims.  Ports are free ones; every wait is a bounded poll;
#  the EXIT trap kills the broker.  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_trim_security

KEYS=$TMP/keys
mkdir -p "$KEYS"
keygen () {
    "$HERALD" keygen "$1" --dir "$KEYS" >/dev/null && "$HERALD" keygen --show "$KEYS/$1.key"
}
keygen broker >/dev/null
OP_KEY=$(keygen op)
READER_KEY=$(keygen reader)
cat >"$TMP/acl" <<EOF2
[user op]
key = $OP_KEY
read = *
publish = *
admin = trim

[user reader]
key = $READER_KEY
read = *
publish = *
EOF2
chmod 600 "$TMP/acl"
API=tcp://127.0.0.1:$(free_port)
FANOUT=tcp://127.0.0.1:$(free_port)
while [ "$FANOUT" = "$API" ]; do FANOUT=tcp://127.0.0.1:$(free_port); done
OP=("$HERALD" --endpoint "$API" --key "$KEYS/op.key_secret" --server-key "@$KEYS/broker.key")
READER=("$HERALD" --endpoint "$API" --key "$KEYS/reader.key_secret" \
        --server-key "@$KEYS/broker.key")
"$HERALDD" --data-dir "$TMP/data" --api "$API" --fanout "$FANOUT" \
    --curve-secret "$KEYS/broker.key_secret" --acl "$TMP/acl" >>"$TMP/heraldd.log" 2>&1 &
BROKER_PID=$!
up=no
for _ in $(seq 1 150); do
    "${OP[@]}" --timeout 300 status >/dev/null 2>&1 && { up=yes; break; }
    sleep 0.1
done
check "the secured broker answers STATUS" test $up = yes
[ $up = yes ] || { tail -20 "$TMP/heraldd.log"; shtest_done; }

state () {     #  state KEY...: STATUS first and trims as this user reads them
    "$@" status 2>/dev/null | $PY -c 'import json,sys
s = json.load(sys.stdin)
print("%s|%s" % (s.get("first"), ",".join("%s:%s" % (t["prefix"], t["until"])
                                          for t in s.get("trims", []))))'
}

"${READER[@]}" pub orders.1 '{"n":1}' --count 300 >/dev/null 2>&1
"${OP[@]}" archive --until-seq 200 --to "$TMP/arc" >"$TMP/out" 2>&1
check "op archives 1..200" grep -q "archived seq 1..200 " "$TMP/out"

"${READER[@]}" trim --archive "$TMP/arc" >"$TMP/out" 2>"$TMP/err"
rc=$?
check "reader (no admin = trim) trims with the archive: exit 1" test $rc -eq 1
check "  herald: unauthorized, naming the grant" \
    grep -q "^herald: unauthorized: .*admin = trim" "$TMP/err"
"${READER[@]}" trim --unarchived --prefix orders. --until-seq 100 >"$TMP/out" 2>"$TMP/err"
rc=$?
check "reader trims unarchived: exit 1, unauthorized" \
    bash -c "[ $rc -eq 1 ] && grep -q '^herald: unauthorized: ' '$TMP/err'"
check "  nothing was trimmed" test "$(state "${OP[@]}")" = "1|"

"${OP[@]}" trim --archive "$TMP/arc" >"$TMP/out" 2>"$TMP/err"
check "op (admin = trim) trims to 200" grep -q '"until":200,"first":201' "$TMP/out"
check "reader reads STATUS first and trims" test "$(state "${READER[@]}")" = "201|:200"
"${READER[@]}" replay >"$TMP/out" 2>"$TMP/err"
check "reader's replay from 1: exit 1, first 201" \
    bash -c "[ $? -eq 1 ] && grep -q 'is 201 (herald replay --from 201)' '$TMP/err'"

shtest_done

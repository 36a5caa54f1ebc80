#!/bin/bash
#  =========================================================================
#  test_herald_cli_acl_admin - `herald acl reload` and `herald acl show`
#
#  Against real heraldd processes: one with --curve-secret and --acl (keys
#  made here by `herald keygen`; the timed file check a day apart, so only
#  the command reloads), one with security off.  reload picks up a new
#  user at once and names the users it revoked; a broken file is refused
#  with its FILE:LINE (exit 1) and the table stays; show prints what the
#  file says, as text and as one JSON object; a user without `admin = acl`
#  is refused (exit 1); security off is refused (exit 1); no broker is
#  exit 2; usage errors are 64.  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_cli_acl_admin

KEYS=$TMP/keys
mkdir -p "$KEYS"
keygen () {
    "$HERALD" keygen "$1" --dir "$KEYS" >/dev/null && "$HERALD" keygen --show "$KEYS/$1.key"
}
BROKER_KEY=$(keygen broker)
ALICE_KEY=$(keygen alice)
CAROL_KEY=$(keygen carol)
EVE_KEY=$(keygen eve)
check "the keys are made" test ${#ALICE_KEY} -eq 40 -a ${#EVE_KEY} -eq 40

port () { local p; p=$(free_port); while grep -qx "$p" "$TMP/ports" 2>/dev/null; do
          p=$(free_port); done; echo "$p" >>"$TMP/ports"; echo "$p"; }
API=tcp://127.0.0.1:$(port)
FANOUT=tcp://127.0.0.1:$(port)
SCOPE_FANOUT=tcp://127.0.0.1:$(port)
PLAIN_API=tcp://127.0.0.1:$(port)
PLAIN_FANOUT=tcp://127.0.0.1:$(port)
DEAD_API=tcp://127.0.0.1:$(port)

#  acl_file [MORE]: the ACL, written whole by rename
acl_file () {
    cat >"$TMP/acl.tmp" <<EOF
[scope orders-view]
read = orders.
fanout = $SCOPE_FANOUT

[user alice]
key = $ALICE_KEY
read = *
publish = orders.
admin = acl status

[user carol]
key = $CAROL_KEY
scope = orders-view
publish = stock.
EOF
    [ $# -gt 0 ] && printf '%s\n' "$1" >>"$TMP/acl.tmp"
    chmod 600 "$TMP/acl.tmp"
    mv "$TMP/acl.tmp" "$TMP/acl"
}
acl_file

A=(--endpoint "$API" --key "$KEYS/alice.key_secret" --server-key "@$KEYS/broker.key")
C=(--endpoint "$API" --key "$KEYS/carol.key_secret" --server-key "@$KEYS/broker.key")
E=(--endpoint "$API" --key "$KEYS/eve.key_secret" --server-key "@$KEYS/broker.key")

"$HERALDD" --data-dir "$TMP/data" --api "$API" --fanout "$FANOUT" \
    --curve-secret "$KEYS/broker.key_secret" --acl "$TMP/acl" --acl-check-ms 86400000 \
    --audit-log "$TMP/audit.log" >>"$TMP/heraldd.log" 2>&1 &
BROKER_PID=$!
"$HERALDD" --data-dir "$TMP/plain" --api "$PLAIN_API" --fanout "$PLAIN_FANOUT" \
    >>"$TMP/plain.log" 2>&1 &
PIDS+=($!)
up=no
for _ in $(seq 1 150); do
    if "$HERALD" "${A[@]}" --timeout 300 status >/dev/null 2>&1 \
    && "$HERALD" --endpoint "$PLAIN_API" --timeout 300 status >/dev/null 2>&1; then
        up=yes
        break
    fi
    sleep 0.1
done
check "both brokers answer STATUS" test $up = yes
if [ $up != yes ]; then
    tail -20 "$TMP/heraldd.log"
    shtest_done
fi

#  ---------------------------------------------------------------------
#  show

"$HERALD" "${A[@]}" acl show >"$TMP/show" 2>&1
rc=$?
check "acl show exits 0" test $rc -eq 0
check "... prints the acl_version" grep -Eq '^acl_version +[0-9a-f]{12}$' "$TMP/show"
check "... the file" grep -Fxq "path         $TMP/acl" "$TMP/show"
check "... when it was loaded (RFC 3339)" grep -Eq '^loaded +20[0-9-]{8}T[0-9:.]+Z$' "$TMP/show"
check "... the scope, its fanout and prefixes" \
    grep -Fxq "scope orders-view  fanout $SCOPE_FANOUT  read orders." "$TMP/show"
check "... alice: read-all, her prefixes, grants and key prefix" \
    grep -Fxq "user alice  scope *  publish orders.  admin status acl  keys ${ALICE_KEY:0:10}" \
    "$TMP/show"
check "... carol: her scope, no grant" \
    grep -Fxq "user carol  scope orders-view  publish stock.  admin -  keys ${CAROL_KEY:0:10}" \
    "$TMP/show"
check "... no whole key" bash -c "! grep -Fq -e '$ALICE_KEY' -e '$CAROL_KEY' '$TMP/show'"
VERSION=$(sed -n 's/^acl_version *//p' "$TMP/show")
check "... the version heraldd shows in STATUS" bash -c \
    "'$HERALD' ${A[*]} status --format json | grep -q '\"acl_version\":\"$VERSION\"'"

"$HERALD" "${A[@]}" acl show --json >"$TMP/show.json" 2>&1
check "acl show --json is one JSON object saying the same" $PY -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
o = json.loads(lines[0])
assert o["op"] == "show" and o["acl_version"] == sys.argv[2] and o["path"] == sys.argv[3]
users = {u["name"]: u for u in o["users"]}
assert set(users) == {"alice", "carol"}, users
assert users["alice"]["scope"] == "*" and users["alice"]["admin"] == ["status", "acl"]
assert users["carol"]["scope"] == "orders-view" and users["carol"]["publish"] == ["stock."]
assert users["carol"]["keys"] == [sys.argv[4][:10]]
assert o["scopes"] == [{"name": "orders-view", "fanout": sys.argv[5], "read": ["orders."]}]
' "$TMP/show.json" "$VERSION" "$TMP/acl" "$CAROL_KEY" "$SCOPE_FANOUT"
"$HERALD" "${A[@]}" --format json acl show >"$TMP/show.json2" 2>&1
check "--format json does the same" cmp -s "$TMP/show.json" "$TMP/show.json2"

#  ---------------------------------------------------------------------
#  reload

acl_file "$(printf '\n[user eve]\nkey = %s\nread = *\n' "$EVE_KEY")"
"$HERALD" "${E[@]}" --timeout 1000 status >/dev/null 2>&1
check "eve is refused before the reload" test $? -eq 1
"$HERALD" "${A[@]}" acl reload >"$TMP/reload" 2>&1
rc=$?
check "acl reload exits 0" test $rc -eq 0
check "... says the new version, the old one, the counts and no revocation" grep -Eq \
    "^ACL reloaded at $API: version [0-9a-f]{12} \\(was $VERSION\\), 3 users, 1 scopes; revoked: none$" \
    "$TMP/reload"
"$HERALD" "${E[@]}" --timeout 2000 status >/dev/null 2>&1
check "eve is admitted at once after it" test $? -eq 0

#  carol removed: named as revoked, in JSON
acl_file "$(printf '\n[user eve]\nkey = %s\nread = *\n' "$EVE_KEY")"
sed -i '/^\[user carol\]/,/^publish = stock\.$/d' "$TMP/acl"
"$HERALD" "${A[@]}" acl reload --json >"$TMP/reload.json" 2>&1
rc=$?
check "acl reload --json exits 0" test $rc -eq 0
check "... names carol as revoked" $PY -c '
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["op"] == "reload" and o["revoked"] == ["carol"] and o["users"] == 2, o
' "$TMP/reload.json"
NOW=$(sed -n 's/^acl_version *//p' <("$HERALD" "${A[@]}" acl show))

#  A broken file: refused with its line, the table stays
acl_file "$(printf '\n[user zed]\nkey = short\n')"
"$HERALD" "${A[@]}" acl reload >"$TMP/broken" 2>&1
rc=$?
check "a broken file: acl reload exits 1" test $rc -eq 1
check "... naming FILE:LINE" grep -Fq "herald: bad_request: ACL not reloaded, version $NOW stays in force: $TMP/acl:17:" "$TMP/broken"
"$HERALD" "${A[@]}" acl show >"$TMP/show2" 2>&1
check "... and the table in force stays" grep -Fxq "acl_version  $NOW" "$TMP/show2"
"$HERALD" "${E[@]}" --timeout 2000 status >/dev/null 2>&1
check "... eve still in" test $? -eq 0

#  ---------------------------------------------------------------------
#  refusals and exit codes

acl_file
"$HERALD" "${A[@]}" acl reload >/dev/null 2>&1      # carol back in
"$HERALD" "${C[@]}" acl reload >"$TMP/carol" 2>&1
rc=$?
check "a user without admin acl: exit 1" test $rc -eq 1
check "... herald: unauthorized, naming the grant" \
    grep -Fq "herald: unauthorized: ACL needs the grant 'admin = acl'" "$TMP/carol"
"$HERALD" "${C[@]}" acl show >"$TMP/carol" 2>&1
check "... show too" test $? -eq 1
"$HERALD" --endpoint "$PLAIN_API" acl show >"$TMP/plain.out" 2>&1
rc=$?
check "security off: exit 1" test $rc -eq 1
check "... herald: bad_request: security is off" grep -Fq "herald: bad_request: security is off" \
    "$TMP/plain.out"
"$HERALD" --endpoint "$DEAD_API" --timeout 500 acl reload >"$TMP/dead" 2>&1
check "no broker: exit 2" test $? -eq 2
"$HERALD" "${A[@]}" acl reload now >"$TMP/usage" 2>&1
check "an extra operand: exit 64" test $? -eq 64
"$HERALD" acl check "$TMP/acl" --json >"$TMP/usage" 2>&1
check "--json on check: exit 64" test $? -eq 64
"$HERALD" acl drop >"$TMP/usage" 2>&1
check "an unknown subcommand: exit 64" test $? -eq 64
"$HERALD" acl check "$TMP/acl" >"$TMP/check" 2>&1
check "acl check still works offline" test $? -eq 0
"$HERALD" acl --help >"$TMP/help" 2>&1
check "acl --help names reload and show" grep -q "herald acl show \[--json\]" "$TMP/help"

shtest_done

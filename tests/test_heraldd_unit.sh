#!/bin/bash
#  =========================================================================
#  test_heraldd_unit - what the package installs around heraldd (issue 17)
#
#  - contrib/systemd/heraldd.service (as make builds it, pointed at this
#    build's heraldd and config) passes `systemd-analyze verify`, its
#    Documentation= man pages found through MANPATH; a broken copy fails
#    (so the check can fail);
#  - man/heraldd.8 and man/herald.1 render with `man -l` without a
#    warning; heraldd.8 names every flag of `heraldd --help` and the exit
#    codes 64 and 78; herald.1 every command of `herald --help`;
#  - tools/herald.bash-completion completes commands, subcommands, options
#    (read from this herald) and values;
#  - contrib/heraldd.conf, the packaged config file, starts heraldd (its
#    data-dir and ports overridden on the command line) and parses again
#    on SIGHUP.
#  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init heraldd_unit
SRC=${HERALD_SRCDIR:-$HERE/..}

#  ---- the unit --------------------------------------------------------------
UNIT=$BUILD/contrib/systemd/heraldd.service
if [ ! -f "$UNIT" ]; then
    (cd "$BUILD" && make -s contrib/systemd/heraldd.service) >/dev/null 2>&1
fi
check "the unit is built" test -f "$UNIT"
mkdir -p "$TMP/unit" "$TMP/man/man1" "$TMP/man/man8"
cp "$BUILD/man/heraldd.8" "$TMP/man/man8/"
cp "$BUILD/man/herald.1" "$TMP/man/man1/"
#  the unit as installed, but with this build's heraldd and config file
sed -e "s|^ExecStart=[^ ]*/heraldd |ExecStart=$HERALDD |" \
    -e "s|--config [^ ]*/herald/heraldd.conf|--config $SRC/contrib/heraldd.conf|" \
    "$UNIT" >"$TMP/unit/heraldd.service"
check "the unit starts the heraldd of the config file" \
    grep -qx "ExecStart=$HERALDD --config $SRC/contrib/heraldd.conf" "$TMP/unit/heraldd.service"
verify () {
    MANPATH=$TMP/man SYSTEMD_LOG_COLOR=0 systemd-analyze verify "$1" >"$TMP/verify.out" 2>&1
}
if verify "$TMP/unit/heraldd.service" && [ ! -s "$TMP/verify.out" ]; then
    ok "systemd-analyze verify: no error, no warning"
else
    not_ok "systemd-analyze verify: $(head -c 600 "$TMP/verify.out")"
fi
for key in "Type=notify" "DynamicUser=yes" "StateDirectory=herald" "ProtectSystem=strict" \
           "ExecReload=/bin/kill -HUP \$MAINPID" "RestartPreventExitStatus=64 78"; do
    check "the unit has $key" grep -qxF "$key" "$TMP/unit/heraldd.service"
done
mkdir -p "$TMP/bad"
sed -e 's/^Type=notify$/Type=notifyy/' -e 's/^DynamicUser=yes$/DynamicUser=maybe/' \
    "$TMP/unit/heraldd.service" >"$TMP/bad/heraldd.service"
check "systemd-analyze verify refuses a broken copy" \
    bash -c "! MANPATH=$TMP/man systemd-analyze verify $TMP/bad/heraldd.service >/dev/null 2>&1"

#  ---- the man pages ---------------------------------------------------------
for page in "$BUILD/man/heraldd.8" "$BUILD/man/herald.1"; do
    name=$(basename "$page")
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings=w -l "$page" >"$TMP/$name.txt" 2>"$TMP/$name.err"
    check "man -l $name renders" test -s "$TMP/$name.txt"
    if [ -s "$TMP/$name.err" ]; then not_ok "man -l $name: $(head -c 300 "$TMP/$name.err")"
    else ok "man -l $name: no warning"; fi
    for section in NAME SYNOPSIS DESCRIPTION "EXIT STATUS" "SEE ALSO"; do
        check "$name has $section" grep -qx "$section" "$TMP/$name.txt"
    done
    check "$name carries the version of heraldd --version" \
        grep -qF "herald $("$HERALDD" --version | awk '{print $2}')" "$TMP/$name.txt"
done
#  every flag heraldd knows is in heraldd(8)
missing=$("$HERALDD" --help | grep -o -- '^  --[a-z][a-z-]*' | sed 's/^ *//' | while read -r flag; do
    grep -qF -- "$flag" "$TMP/heraldd.8.txt" || echo "$flag"; done)
check "heraldd.8 names every flag of heraldd --help${missing:+ (missing: $missing)}" test -z "$missing"
check "heraldd.8 gives exit 64 (EX_USAGE)" grep -qE '^ +64 +A +usage +error' "$TMP/heraldd.8.txt"
check "heraldd.8 gives exit 78 (EX_CONFIG)" grep -qE '^ +78 +A +configuration +file +error' \
    "$TMP/heraldd.8.txt"
#  every command herald knows is in herald(1)
missing=$("$HERALD" --help | awk '/^Commands:/ { on = 1; next } on && /^[^ ]/ { on = 0 }
                                  on && /^  [a-z]/ { print $1 }' | sort -u | while read -r cmd; do
    grep -qE "^       $cmd( |$)" "$TMP/herald.1.txt" || echo "$cmd"; done)
check "herald.1 names every command of herald --help${missing:+ (missing: $missing)}" \
    test -z "$missing"
check "herald.1 gives exit 64" grep -qE '^ +64 +A +usage +error' "$TMP/herald.1.txt"

#  ---- bash completion -------------------------------------------------------
#  complete WORDS...: what TAB offers after WORDS (the last may be partial)
complete_words () {
    bash -c 'source "$1"; shift
             COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _herald
             printf "%s\n" "${COMPREPLY[@]}"' _ "$SRC/tools/herald.bash-completion" "$@" \
        | sort | tr '\n' ' ' | sed 's/ $//'
}
offers () {
    local want=$1 got
    shift
    got=$(complete_words "$HERALD" "$@")
    if [ "$got" = "$want" ]; then ok "completion of '$*': $want"
    else not_ok "completion of '$*': got '$got', expected '$want'"; fi
}
offers "read repair replay restore" re
offers "status" --endpoint tcp://127.0.0.1:1 st
offers "add remove status transfer" cluster ""
offers "check reload show" acl ""
offers "json table" --format ""
offers "--from --from-ts" replay --f
offers "group groups" help gr
offers "trim" tr
offers "--dry-run" trim --dr
offers "--unarchived --until-seq --until-ts" trim --un
every=$(complete_words "$HERALD" "")
check "completion offers every command" \
    bash -c "for cmd in pub tail replay read status inspect repair cluster keygen acl whoami \
                        groups group sub archive backup restore trim; do [[ ' $every ' == *\" \$cmd \"* ]] || exit 1; done"
mkdir -p "$TMP/dirs/data1" "$TMP/dirs/data2"
offers "$TMP/dirs/data1 $TMP/dirs/data2" inspect --data-dir "$TMP/dirs/da"
offers "$TMP/dirs/data1 $TMP/dirs/data2" trim --archive "$TMP/dirs/da"

#  ---- the packaged config file ----------------------------------------------
API=tcp://127.0.0.1:$(free_port)
FANOUT=tcp://127.0.0.1:$(free_port)
"$HERALDD" --config "$SRC/contrib/heraldd.conf" --data-dir "$TMP/data" --api "$API" \
    --fanout "$FANOUT" >"$TMP/conf.log" 2>&1 &
BROKER_PID=$!
up=
for _ in $(seq 1 200); do
    kill -0 "$BROKER_PID" 2>/dev/null || break
    if "$HERALD" --endpoint "$API" --timeout 200 status >/dev/null 2>&1; then up=1; break; fi
    sleep 0.05
done
check "heraldd starts with contrib/heraldd.conf" test -n "$up"
kill -HUP "$BROKER_PID" 2>/dev/null
reloaded=
for _ in $(seq 1 100); do
    grep -q "SIGHUP: settings reloaded from $SRC/contrib/heraldd.conf" "$TMP/conf.log" && { reloaded=1; break; }
    sleep 0.05
done
check "SIGHUP reads contrib/heraldd.conf again" test -n "$reloaded"
kill -TERM "$BROKER_PID"
wait "$BROKER_PID"
check "... and it stops with exit 0" [ $? -eq 0 ]
BROKER_PID=

shtest_done

#!/bin/bash
#  =========================================================================
#  test_heraldd_startup - how heraldd refuses to start (issue 12, item 8)
#
#  A failed start leaves nothing behind: with the api or the fanout port
#  held by a running heraldd (a second ./run.sh), a second heraldd exits 1
#  at once, says the address is in use, and has created no data directory
#  (neither the one named, nor the default ./var/herald).  Usage errors
#  exit 64 and config file errors 78 (docs/broker.md), each with the hint
#  "(see heraldd --help)" printed exactly once, and create nothing either.
#  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_startup

#  try NAME ARGS...: run heraldd ARGS in the empty directory $TMP/NAME
#  (its working directory, so the default ./var/herald would land there),
#  at most 20 s; its status in $RC, its stderr in $TMP/NAME.err.
try () {
    local name=$1
    shift
    mkdir -p "$TMP/$name"
    (cd "$TMP/$name" && exec timeout 20 "$HERALDD" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err")
    RC=$?
}

#  the directory $TMP/NAME is still empty
empty () { [ -z "$(ls -A "$TMP/$1")" ]; }
#  a hint to see --help is in $TMP/NAME.err exactly once, in any wording
one_hint () { [ "$(grep -o 'see [a-z ]*--help' "$TMP/$1.err" | wc -l)" -eq 1 ]; }
says () { grep -q -- "$2" "$TMP/$1.err"; }
status_is () { [ "$RC" = "$1" ] || { echo "# exit status $RC, expected $1"; cat "$TMP/$NAME.err"; false; }; }

#  ---- a broker holds two ports --------------------------------------------
API=tcp://127.0.0.1:$(free_port)
FANOUT=tcp://127.0.0.1:$(free_port)
"$HERALDD" --data-dir "$TMP/first" --api "$API" --fanout "$FANOUT" >"$TMP/first.log" 2>&1 &
BROKER_PID=$!
up=
for _ in $(seq 1 200); do
    kill -0 "$BROKER_PID" 2>/dev/null || break
    if "$HERALD" --endpoint "$API" --timeout 200 status >/dev/null 2>&1; then up=1; break; fi
    sleep 0.05
done
if [ -z "$up" ]; then
    echo "not ok - the first heraldd did not start:"
    cat "$TMP/first.log"
    echo "0 passed, 1 failed"
    exit 1
fi

NAME=api_busy
try $NAME --data-dir "$TMP/$NAME/store/herald" --api "$API" --fanout tcp://127.0.0.1:$(free_port)
check "api port in use: exit 1" status_is 1
check "api port in use: says the address is in use, naming it" says $NAME "api $API: the address is in use"
check "api port in use: no data directory created" empty $NAME

NAME=fanout_busy
try $NAME --data-dir "$TMP/$NAME/store/herald" --api tcp://127.0.0.1:$(free_port) --fanout "$FANOUT"
check "fanout port in use: exit 1" status_is 1
check "fanout port in use: says the address is in use, naming it" says $NAME "fanout $FANOUT: the address is in use"
check "fanout port in use: no data directory created" empty $NAME

#  the default data directory, as a second ./run.sh in another tree would
NAME=default_busy
try $NAME --api "$API" --fanout "$FANOUT"
check "ports in use, default data dir: exit 1" status_is 1
check "ports in use, default data dir: ./var not created" empty $NAME

#  the first broker is untouched and can still be stopped cleanly
answers () { "$HERALD" --endpoint "$API" --timeout 2000 status >/dev/null; }
check "the first broker still answers" answers
kill -TERM "$BROKER_PID"
wait "$BROKER_PID"
check "the first broker stops with exit 0" [ $? -eq 0 ]
BROKER_PID=

#  ---- usage errors: 64, one hint, nothing created ---------------------------
PORTS=(--api tcp://127.0.0.1:$(free_port) --fanout tcp://127.0.0.1:$(free_port))
n=0
for args in "--bogus" "stray" "--max-batch 0" "--max-batch" "--data-dir" "--help=yes" \
            "--api localhost:5580" "--config" "--config="; do
    n=$((n + 1))
    NAME=usage$n
    # shellcheck disable=SC2086   # split on purpose: one case per string
    try $NAME $args "${PORTS[@]}"
    check "'heraldd $args': exit 64" status_is 64
    check "'heraldd $args': the hint once" one_hint $NAME
    check "'heraldd $args': nothing created" empty $NAME
done

#  ---- config file errors: 78, one hint, nothing created ---------------------
printf 'max-batch = 10\nno-such-key = 1\n' >"$TMP/unknown.conf"
printf 'max-batch = zero\n' >"$TMP/badvalue.conf"
n=0
for file in "$TMP/missing.conf" "$TMP/unknown.conf" "$TMP/badvalue.conf" "$TMP"; do
    n=$((n + 1))
    NAME=config$n
    try $NAME --config "$file" "${PORTS[@]}"
    check "--config ${file#"$TMP"/}: exit 78" status_is 78
    check "--config ${file#"$TMP"/}: the hint once" one_hint $NAME
    check "--config ${file#"$TMP"/}: names the file" says $NAME "$file"
    check "--config ${file#"$TMP"/}: nothing created" empty $NAME
done
NAME=config_line
try $NAME --config "$TMP/unknown.conf" "${PORTS[@]}"
check "an unknown key: FILE:LINE and the key" says $NAME "unknown.conf:2: no-such-key: unknown key"

#  ---- --help and --version still exit 0 on stdout --------------------------
NAME=help
try $NAME --help --bogus
check "--help wins over a bad flag: exit 0" status_is 0
check "--help prints the usage on stdout" grep -q "^Usage: heraldd" "$TMP/help.out"
check "--help prints nothing on stderr" [ ! -s "$TMP/help.err" ]
NAME=h
try $NAME -h
check "-h is --help: exit 0" status_is 0
check "-h prints the usage on stdout" grep -q "^Usage: heraldd" "$TMP/h.out"

shtest_done

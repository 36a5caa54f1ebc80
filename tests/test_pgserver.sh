#!/bin/bash
#  =========================================================================
#  test_pgserver - tests/pgserver.sh, the tests' PostgreSQL server
#
#  start prints a conninfo that libpq (psql) and psycopg2 accept; the
#  server listens on 127.0.0.1 only; a port taken between the choice and
#  the bind (a socket bound there but not listening, which the free-port
#  check cannot see) makes it try another; status says whether it runs;
#  stop stops it (no process left) and start again reuses data and port;
#  kill -9 loses no commit; watch stops it and removes DIR when its stdin
#  ends, as when the test holding the pipe dies.  The last line is
#  "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init pgserver
PGSERVER=$HERE/pgserver.sh
PGDIR=$(mktemp -d /tmp/herald-pgtest.XXXXXX)
PGDIR2=$(mktemp -d /tmp/herald-pgtest.XXXXXX)
HOLDER=
shtest_on_exit () {
    [ -z "$HOLDER" ] || { kill "$HOLDER" 2>/dev/null; wait "$HOLDER" 2>/dev/null; }
    "$PGSERVER" stop "$PGDIR" >/dev/null 2>&1
    "$PGSERVER" stop "$PGDIR2" >/dev/null 2>&1
    rm -rf "$PGDIR" "$PGDIR2"
}

PSQL=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)/psql
sql () { "$PSQL" -X -q -tA "$1" -c "$2" 2>&1; }
#  gone PID...: none of them runs
gone () {
    local pid state
    for pid in "$@"; do
        # a zombie is gone: the postmaster is nobody's child, reaped late
        state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)
        if [ -n "$state" ] && [ "$state" != Z ]; then return 1; fi
    done
    return 0
}
#  the postmaster's pid, from DIR/data/postmaster.pid
pm_pid () { head -n 1 "$1/data/postmaster.pid" 2>/dev/null; }
#  listening sockets on PORT, as local addresses in /proc/net/tcp{,6}
listeners () {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v port="$hex" 'FNR > 1 && $4 == "0A" { split($2, a, ":"); if (a[2] == port) print a[1] }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

#  ---- start: a conninfo, 127.0.0.1 only ------------------------------------
#  A port bound (not listening) before pgserver.sh chooses it: the bind fails,
#  it goes on to the next candidate
read -r TAKEN FREE < <($PY -c 'import random, socket
ports = []
while len(ports) < 2:
    p = random.randrange(20000, 32768)
    with socket.socket() as s:
        try: s.bind(("127.0.0.1", p))
        except OSError: continue
    ports.append(p)
print(*ports)')
$PY -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); print("bound", flush=True); time.sleep(60)' \
    "$TAKEN" >"$TMP/holder.out" &
HOLDER=$!
for _ in $(seq 1 100); do grep -q bound "$TMP/holder.out" 2>/dev/null && break; sleep 0.05; done
CONNINFO=$(PGSERVER_PORTS="$TAKEN $FREE" "$PGSERVER" start "$PGDIR" 2>"$TMP/start.err")
check "start prints one conninfo line" \
    test "$CONNINFO" = "host=127.0.0.1 port=$FREE dbname=herald user=herald"
check "a port taken at the bind: another one (not $TAKEN)" grep -q "port=$FREE" <<<"$CONNINFO"
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null; HOLDER=
check "psql connects with it" test "$(sql "$CONNINFO" 'SELECT 1')" = 1
check "psycopg2 connects with it" $PY -c 'import psycopg2, sys
c = psycopg2.connect(sys.argv[1]); cur = c.cursor(); cur.execute("SELECT 2"); assert cur.fetchone()[0] == 2' \
    "$CONNINFO"
check "it listens on 127.0.0.1 only" test "$(listeners "$FREE")" = 0100007F
check "its socket is in DIR/sock" test -S "$PGDIR/sock/.s.PGSQL.$FREE"
check "status: 0 and the conninfo" test "$("$PGSERVER" status "$PGDIR")" = "$CONNINFO"
if [ "$(id -u)" -eq 0 ]; then
    check "as root, the server runs as postgres" \
        test "$(ps -o user= -p "$(pm_pid "$PGDIR")")" = postgres
fi
check "a second start in DIR is refused" bash -c "! '$PGSERVER' start '$PGDIR' 2>/dev/null"

#  ---- stop, start again, kill -9 --------------------------------------------
sql "$CONNINFO" 'CREATE TABLE t (n int); INSERT INTO t VALUES (1)' >/dev/null
PID=$(pm_pid "$PGDIR")
"$PGSERVER" stop "$PGDIR"
check "stop: exit 0" test $? -eq 0
check "stop: the postmaster is gone" gone "$PID"
"$PGSERVER" status "$PGDIR" >/dev/null
check "status after stop: 3" test $? -eq 3
check "start again: the same conninfo" test "$("$PGSERVER" start "$PGDIR")" = "$CONNINFO"
check "start again: the data kept" test "$(sql "$CONNINFO" 'SELECT count(*) FROM t')" = 1
sql "$CONNINFO" 'INSERT INTO t VALUES (2)' >/dev/null
PID=$(pm_pid "$PGDIR")
CHILDREN=$(ps -o pid= --ppid "$PID")
"$PGSERVER" kill "$PGDIR"
# shellcheck disable=SC2086
check "kill: the postmaster and its children are gone" gone "$PID" $CHILDREN
"$PGSERVER" start "$PGDIR" >/dev/null
check "after kill -9: the last commit is there" \
    test "$(sql "$CONNINFO" 'SELECT count(*) FROM t')" = 2
"$PGSERVER" stop "$PGDIR"

#  ---- watch: the server goes when the pipe ends ------------------------------
exec 7> >(exec "$PGSERVER" watch "$PGDIR2")
WATCHER=$!
CONNINFO2=$("$PGSERVER" start "$PGDIR2")
PID=$(pm_pid "$PGDIR2")
check "a second server beside (another port)" test "$CONNINFO2" != "$CONNINFO"
exec 7>&-
for _ in $(seq 1 400); do [ -d "$PGDIR2" ] || break; sleep 0.05; done
check "watch: the server stopped when its stdin ended" gone "$PID"
check "watch: DIR removed" test ! -d "$PGDIR2"
gone "$WATCHER" || { kill "$WATCHER" 2>/dev/null; not_ok "watch: it ended"; }

#  ---- usage -------------------------------------------------------------------
"$PGSERVER" 2>/dev/null
check "no arguments: exit 1" test $? -eq 1
"$PGSERVER" restart "$PGDIR" 2>"$TMP/usage.err"
check "an unknown command: exit 1 and the usage" grep -q usage "$TMP/usage.err"

shtest_done

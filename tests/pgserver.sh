#!/usr/bin/env bash
#  =========================================================================
#  pgserver.sh - a private PostgreSQL server for the tests
#
#      tests/pgserver.sh start DIR     start it (or start it again), print
#                                      its libpq conninfo on one line
#      tests/pgserver.sh stop DIR      stop it (killed if it does not stop)
#      tests/pgserver.sh kill DIR      kill -9 it (a crash, on purpose)
#      tests/pgserver.sh status DIR    print the conninfo; exit 0 when it
#                                      runs, 3 when it does not
#      tests/pgserver.sh watch DIR     read stdin until its end, then stop
#                                      the server and remove DIR
#
#  watch is how a test makes sure its server goes even when the test dies
#  (a crash, kill -9): it starts `watch DIR` in a session of its own with
#  stdin the read end of a pipe whose write end only the test holds
#  (close-on-exec).  When the test exits, whatever the way, the pipe
#  ends and the server is stopped (tests/pgutil.c,
#  bindings/python/tests/pgserver.py).
#
#  DIR (created when missing) holds everything: DIR/data (the cluster,
#  made by initdb the first time), DIR/sock (its unix socket), DIR/log
#  (the server's log), DIR/port and DIR/conninfo.  The server listens on
#  127.0.0.1 only, on a port chosen free at run time (random in
#  20000-32767, below the kernel's ephemeral range; another one is tried
#  when the bind races with someone else).  Starting DIR again after a
#  stop or a kill reuses its data and its port (the same conninfo: a
#  client that was connected reconnects to the same address), waiting up
#  to 10 s for the port to be free again.
#
#  The printed conninfo, e.g.
#      host=127.0.0.1 port=24117 dbname=herald user=herald
#  works for libpq (PQconnectdb), psql and psycopg2.connect.  The user
#  herald is the superuser made by initdb; the database herald is made at
#  the first start.  Authentication is trust, for 127.0.0.1 and the
#  socket in DIR only (no other address is listened on).
#
#  As root the server runs as the user postgres (postgres refuses root):
#  DIR is chown'ed to it, so DIR's parent must let postgres in (a
#  directory made by mktemp -d in /tmp will do; a 0700 directory of
#  root's above DIR will not, and start says so).  As another user it
#  runs as that user.  The binaries: $PG_BINDIR, else the newest
#  /usr/lib/postgresql/N/bin (Debian's postgresql package).
#
#  Settings chosen for quick tests, and why they weaken nothing tested:
#  fsync=off and full_page_writes=off only matter when the machine (the
#  kernel) crashes: a killed server's writes are already in the kernel's
#  page cache and its WAL replays at the next start.  synchronous_commit
#  stays on, so a COMMIT that returned is in the WAL (written to the
#  kernel) and survives a kill -9 of the server, which the tests do on
#  purpose.  Small shared_buffers and max_connections 100 keep the memory
#  small; no other setting changes what a transaction does.
#
#  $PGSERVER_PORTS (for tests/test_pgserver.sh): ports tried first, in
#  order, before random ones.
#
#  Bounded: start gives up after 30 s, stop after 10 s of a fast
#  shutdown, then kills the postmaster and its children (by their pids)
#  and waits at most 5 s more.  Exit 0 on success; 1 with a message on
#  stderr (and the end of the server's log) otherwise.
#  =========================================================================

set -u

pg_say () { echo "pgserver: $*" >&2; }
pg_die () { pg_say "$*"; exit 1; }

pg_bindir () {
    if [ -n "${PG_BINDIR:-}" ]; then
        echo "$PG_BINDIR"
        return
    fi
    local dir best=""
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
        [ -x "$dir/postgres" ] && best=$dir
    done
    [ -n "$best" ] || pg_die "no PostgreSQL server found (/usr/lib/postgresql/N/bin; install the Debian package postgresql, or set PG_BINDIR)"
    echo "$best"
}

#  pg_as COMMAND...: run COMMAND as the server's user
pg_as () {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

#  pg_port_busy PORT: 0 when something listens on 127.0.0.1:PORT or
#  0.0.0.0:PORT (from /proc/net/tcp, state 0A = LISTEN)
pg_port_busy () {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v port="$hex" 'NR > 1 && $4 == "0A" {
            split($2, a, ":");
            if (a[2] == port && (a[1] == "0100007F" || a[1] == "00000000")) found = 1
        } END { exit found ? 0 : 1 }' /proc/net/tcp 2>/dev/null
}

pg_pick_port () {
    local port tries
    # $PGSERVER_PORTS (tests/test_pgserver.sh): candidates tried first, in
    # order, each once
    while [ -n "${pg_candidates:-}" ]; do
        port=${pg_candidates%% *}
        case $pg_candidates in *" "*) pg_candidates=${pg_candidates#* } ;; *) pg_candidates= ;; esac
        pg_port_busy "$port" || { echo "$port"; return 0; }
    done
    for tries in $(seq 1 200); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
        pg_port_busy "$port" || { echo "$port"; return 0; }
    done
    return 1
}

#  pg_alive PID: 0 when PID runs.  A zombie does not: the postmaster is
#  nobody's child here (pg_ctl detaches it), and whoever inherits it may
#  be slow to reap it.
pg_alive () {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
    [ -n "$state" ] && [ "$state" != Z ]
}

#  pg_pid DIR: the postmaster's pid when it runs
pg_pid () {
    local pid
    [ -f "$1/data/postmaster.pid" ] || return 1
    pid=$(head -n 1 "$1/data/postmaster.pid" 2>/dev/null)
    case $pid in ''|*[!0-9]*) return 1 ;; esac
    pg_alive "$pid" || return 1
    echo "$pid"
}

pg_conninfo () {
    echo "host=127.0.0.1 port=$1 dbname=herald user=herald"
}

pg_log_tail () {
    [ -f "$1/log" ] || return 0
    echo "---- the end of $1/log ----" >&2
    tail -n 15 "$1/log" >&2
}

pg_initdb () {
    local dir=$1 bindir=$2
    [ -f "$dir/data/PG_VERSION" ] && return 0
    rm -rf "$dir/data"
    # --no-sync: nothing to make durable before the first start (see above)
    if ! (cd "$dir" && pg_as "$bindir/initdb" -D "$dir/data" -U herald -A trust \
              -E UTF8 --locale=C --no-sync --no-instructions >"$dir/initdb.log" 2>&1); then
        tail -n 15 "$dir/initdb.log" >&2
        pg_die "initdb failed in $dir/data (the whole output: $dir/initdb.log)"
    fi
    # Only the socket in DIR and 127.0.0.1: no other address, no password
    cat >"$dir/data/pg_hba.conf" <<'EOF'
# tests/pgserver.sh: the socket in DIR/sock and 127.0.0.1 only
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
EOF
    cat >>"$dir/data/postgresql.conf" <<EOF

# tests/pgserver.sh (its header says why each)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
fsync = off
full_page_writes = off
synchronous_commit = on
shared_buffers = 16MB
max_connections = 100
logging_collector = off
log_min_messages = warning
EOF
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$dir/data/pg_hba.conf" "$dir/data/postgresql.conf"
}

#  pg_close_fds: close every descriptor above 2 in this (sub)shell, so that
#  the server does not keep open what its starter had (a test's pipes:
#  a watcher's stdin would never end, a test runner would wait for EOF)
pg_close_fds () {
    local fd
    for fd in $(ls /proc/$BASHPID/fd 2>/dev/null); do
        [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
    done
    return 0
}

#  pg_try_start DIR BINDIR PORT: 0 started; 2 the port was taken; 1 other
pg_try_start () {
    local dir=$1 bindir=$2 port=$3 rc=0
    : >"$dir/log"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$dir/log"
    (pg_close_fds; cd "$dir" && pg_as "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
         -o "-p $port" start >"$dir/pg_ctl.log" 2>&1 </dev/null) || rc=$?
    if [ "$rc" -eq 0 ] && pg_pid "$dir" >/dev/null; then
        return 0
    fi
    # pg_ctl gave up, or the server died: make sure nothing is left
    pg_kill "$dir"
    if grep -qE 'could not bind|Address already in use|could not create any TCP/IP sockets' \
           "$dir/log" 2>/dev/null; then
        return 2
    fi
    return 1
}

#  pg_kill DIR: SIGKILL the postmaster and its children, wait (bounded)
pg_kill () {
    local dir=$1 pid children i
    pid=$(pg_pid "$dir") || return 0
    children=$(ps -o pid= --ppid "$pid" 2>/dev/null)
    kill -KILL "$pid" $children 2>/dev/null
    for i in $(seq 1 100); do
        pg_alive "$pid" || break
        sleep 0.05
    done
    # the backends exit when they see the postmaster gone; make sure
    for pid in $children; do
        for i in $(seq 1 40); do
            pg_alive "$pid" || break
            sleep 0.05
        done
    done
    pg_stale_pidfile "$dir"
    return 0
}

#  pg_stale_pidfile DIR: remove the lock files (postmaster.pid, the
#  socket's .lock) of a postmaster that is dead.  The server would take a
#  zombie's pid for a running postmaster and refuse to start; its shared
#  memory check still stops it when a backend of the old one lives on.
pg_stale_pidfile () {
    local file pid
    for file in "$1/data/postmaster.pid" "$1"/sock/.s.PGSQL.*.lock; do
        [ -f "$file" ] || continue
        pid=$(head -n 1 "$file" 2>/dev/null)
        case $pid in ''|*[!0-9]*) continue ;; esac
        pg_alive "$pid" && continue
        rm -f "$file"
        case $file in *.lock) rm -f "${file%.lock}" ;; esac
    done
}

pg_start () {
    local dir=$1 bindir port rc tries fixed=""
    bindir=$(pg_bindir) || exit 1
    mkdir -p "$dir" || pg_die "cannot create $dir"
    dir=$(cd "$dir" && pwd)
    if pg_pid "$dir" >/dev/null; then
        pg_die "a server already runs in $dir ($(pg_conninfo "$(cat "$dir/port")"))"
    fi
    # The socket path must fit in sun_path (107 bytes)
    [ ${#dir} -le 80 ] || pg_die "$dir is too long for a unix socket path (80 characters at most)"
    mkdir -p "$dir/sock"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || pg_die "running as root needs the user postgres (the Debian package postgresql makes it)"
        chown postgres:postgres "$dir" "$dir/sock"
        chmod 0700 "$dir/sock"
        runuser -u postgres -- test -w "$dir" \
            || pg_die "the user postgres cannot reach $dir (a directory above it is closed to it: use one made by mktemp -d in /tmp)"
    fi
    pg_initdb "$dir" "$bindir"
    pg_stale_pidfile "$dir"
    if [ -f "$dir/port" ]; then
        fixed=$(cat "$dir/port")
    fi
    pg_candidates=${PGSERVER_PORTS:-}
    for tries in $(seq 1 20); do
        if [ -n "$fixed" ]; then
            port=$fixed
        else
            # in this shell, not $(...): it takes from $pg_candidates
            pg_pick_port >"$dir/port.try" || pg_die "no free port found in 20000-32767"
            port=$(cat "$dir/port.try")
        fi
        rc=0
        pg_try_start "$dir" "$bindir" "$port" || rc=$?
        [ "$rc" -eq 0 ] && break
        if [ "$rc" -ne 2 ]; then
            cat "$dir/pg_ctl.log" >&2
            pg_log_tail "$dir"
            pg_die "the server did not start in $dir"
        fi
        # The port was taken between the choice and the bind: another one,
        # or for a restart the same one a little later (10 s at most)
        [ -z "$fixed" ] || sleep 0.5
    done
    if [ "$rc" -ne 0 ]; then
        pg_log_tail "$dir"
        pg_die "the server could not bind port ${fixed:-(20 tries)} in $dir"
    fi
    echo "$port" >"$dir/port"
    rm -f "$dir/port.try"
    if [ ! -f "$dir/created" ]; then
        if ! (cd "$dir" && pg_as "$bindir/psql" -X -q -h "$dir/sock" -p "$port" -U herald \
                  -d postgres -c 'CREATE DATABASE herald' >"$dir/psql.log" 2>&1); then
            cat "$dir/psql.log" >&2
            pg_die "cannot create the database herald"
        fi
        touch "$dir/created"
    fi
    pg_conninfo "$port" | tee "$dir/conninfo"
}

pg_stop () {
    local dir=$1 bindir
    [ -d "$dir" ] || return 0
    dir=$(cd "$dir" && pwd)
    pg_pid "$dir" >/dev/null || return 0
    bindir=$(pg_bindir) || exit 1
    (cd "$dir" && pg_as "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 10 stop \
         >"$dir/pg_ctl.log" 2>&1) || true
    pg_kill "$dir"
    ! pg_pid "$dir" >/dev/null || pg_die "the server in $dir did not stop"
}

pg_status () {
    local dir=$1
    [ -f "$dir/port" ] && pg_conninfo "$(cat "$dir/port")"
    pg_pid "$dir" >/dev/null || exit 3
}

pg_watch () {
    local dir=$1 line
    while IFS= read -r line; do :; done
    pg_stop "$dir"
    case $dir in /|"") ;; *) rm -rf "$dir" ;; esac
}

#  A sanitized test run (./test.sh --sanitize) preloads ASan for the Python
#  interpreter; PostgreSQL's programs are not ours to instrument (initdb
#  did not come back under it)
unset LD_PRELOAD ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
usage="usage: $0 start|stop|kill|status|watch DIR"
[ $# -eq 2 ] || { echo "$usage" >&2; exit 1; }
case $1 in
    start)  pg_start "$2" ;;
    stop)   pg_stop "$2" ;;
    kill)   [ -d "$2" ] && pg_kill "$(cd "$2" && pwd)"; true ;;
    status) pg_status "$2" ;;
    watch)  pg_watch "$2" ;;
    *)      echo "$usage" >&2; exit 1 ;;
esac

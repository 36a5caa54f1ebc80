#!/usr/bin/env bash
# ./run.sh --cluster N: a local cluster of N heraldd nodes on 127.0.0.1, in
# the foreground (run.sh builds first, then runs this; tests run it
# directly with HERALDD and HERALD set).
#
#     tools/run_cluster.sh --cluster N [--base-port P] [HERALDD OPTIONS...]
#
# Node K (node1 .. nodeN) keeps its data in ./var/cluster/nodeK and listens
# on 127.0.0.1 at P+10K (api), P+10K+1 (fanout) and P+10K+2 (Raft), P being
# 5600 unless --base-port says otherwise: node1 at 5610/5611/5612, node2 at
# 5620/..., clear of the single broker's 5580/5581.  A node whose Raft
# directory is empty starts with --cluster-state new (the first start),
# the others with existing, so running this again restarts the same
# cluster.  ./var/cluster/cluster.conf keeps N and P: the members' Raft
# addresses are part of the cluster, so another N or P is refused rather
# than started as a different cluster on the same data.
#
# Each node's lines come out prefixed with its name.  Ctrl-C, SIGTERM or
# SIGHUP stops every node (one SIGTERM each, then SIGKILL for one that has
# not exited after 30 s) and waits for them.  A node that exits while the cluster
# runs is reported and the others go on (stop a node to watch a failover;
# run this again to restart it).  A port in use stops everything before
# any node starts.
#
# Exit status: 0 after Ctrl-C/SIGTERM with every node stopped cleanly; 1
# a node failed to start, a port is in use, or a node did not stop
# cleanly; 64 a usage error.

set -uo pipefail

heraldd=${HERALDD:-broker/heraldd}
herald=${HERALD:-tools/herald}
var=${HERALD_CLUSTER_DIR:-./var/cluster}
stop_wait=30            # seconds a node has to stop after SIGTERM
ready_wait=60           # seconds for the cluster to elect a leader

say () { echo "herald: $*" >&2; }
usage_error () { say "$*"; say "(see ./run.sh --help)"; exit 64; }

nodes=""
base=""
passed=()
while [ $# -gt 0 ]; do
    case $1 in
        --cluster) [ $# -ge 2 ] || usage_error "--cluster needs a number of nodes"
                   nodes=$2; shift 2 ;;
        --cluster=*) nodes=${1#*=}; shift ;;
        --base-port) [ $# -ge 2 ] || usage_error "--base-port needs a port"
                     base=$2; shift 2 ;;
        --base-port=*) base=${1#*=}; shift ;;
        --data-dir|--data-dir=*|--api|--api=*|--fanout|--fanout=*|--node|--node=*\
        |--raft|--raft=*|--peer|--peer=*|--cluster-state|--cluster-state=*)
            usage_error "${1%%=*}: ./run.sh --cluster sets it for each node itself" \
                        "(data in $var/nodeK; ports from --base-port)" ;;
        *) passed+=("$1"); shift ;;
    esac
done
case $nodes in
    [1-9]) ;;
    *) usage_error "--cluster '$nodes': give the number of nodes, 1 to 9 (3 or 5 for a" \
                   "cluster that survives the loss of 1 or 2)" ;;
esac

conf=$var/cluster.conf
# A member's libraft files are in DATA_DIR/raft: none yet, never a member
has_state () { [ -n "$(ls -A "$var/node$1/raft" 2>/dev/null)" ]; }
made=""
for k in 1 2 3 4 5 6 7 8 9; do
    has_state "$k" && made=1
done
# What the cluster in $var was made with binds once a node holds Raft state
if [ -n "$made" ] && [ -f "$conf" ]; then
    made_nodes=$(sed -n 's/^nodes=//p' "$conf")
    made_base=$(sed -n 's/^base_port=//p' "$conf")
    if [ "$made_nodes" != "$nodes" ] || { [ -n "$base" ] && [ "$base" != "$made_base" ]; }; then
        say "$var holds a cluster of $made_nodes nodes on base port $made_base; its" \
            "members and their addresses are part of its Raft state."
        say "Run ./run.sh --cluster $made_nodes$([ "$made_base" = 5600 ] ||
            echo " --base-port $made_base") to start it again, or remove $var to start" \
            "a new cluster (its events go with it)."
        exit 64
    fi
    base=$made_base
fi
base=${base:-5600}
case $base in
    ''|*[!0-9]*) usage_error "--base-port '$base': give a port number" ;;
esac
if [ "$base" -lt 1024 ] || [ $((base + 10 * nodes + 2)) -gt 65535 ]; then
    usage_error "--base-port $base: give 1024 to $((65535 - 10 * nodes - 2)) (node K uses" \
                "P+10K, P+10K+1 and P+10K+2)"
fi

names=() apis=() fanouts=() rafts=() peers=()
for k in $(seq 1 "$nodes"); do
    names+=("node$k")
    apis+=("tcp://127.0.0.1:$((base + 10 * k))")
    fanouts+=("tcp://127.0.0.1:$((base + 10 * k + 1))")
    rafts+=("127.0.0.1:$((base + 10 * k + 2))")
    peers+=(--peer "node$k,127.0.0.1:$((base + 10 * k + 2)),tcp://127.0.0.1:$((base + 10 * k)),tcp://127.0.0.1:$((base + 10 * k + 1))")
done
endpoints=$(IFS=,; echo "${apis[*]}")

# Every port free before any node starts: a node that cannot bind would
# leave the others waiting for it.  Bound the way ZeroMQ and libuv bind
# (SO_REUSEADDR), so a socket in TIME_WAIT does not count as taken.
taken=$(python3 - "$base" "$nodes" <<'EOF'
import socket, sys
base, nodes = int(sys.argv[1]), int(sys.argv[2])
for k in range(1, nodes + 1):
    for offset, what in ((0, "api"), (1, "fanout"), (2, "Raft")):
        port = base + 10 * k + offset
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            print("port %d (node%d's %s) is in use: %s" % (port, k, what, e.strerror))
        finally:
            s.close()
EOF
)
if [ -n "$taken" ]; then
    while IFS= read -r line; do say "$line"; done <<<"$taken"
    if [ -n "$made" ]; then
        say "Is this cluster running already (another ./run.sh --cluster)? Stop what" \
            "holds the port; this cluster's ports are fixed by its Raft state."
    else
        say "Is a cluster running already (another ./run.sh --cluster)? Stop it, or" \
            "choose other ports with --base-port P (node K then uses P+10K to P+10K+2)."
    fi
    exit 1
fi

mkdir -p "$var" || exit 1
[ -n "$made" ] || printf 'nodes=%s\nbase_port=%s\n' "$nodes" "$base" >"$conf"

pids=()
states=()
for k in $(seq 1 "$nodes"); do
    if has_state "$k"; then
        states+=(existing)
    else
        states+=(new)
    fi
done

say "a cluster of $nodes node$([ "$nodes" -eq 1 ] || echo s) on 127.0.0.1, data in $var:"
for k in $(seq 1 "$nodes"); do
    i=$((k - 1))
    printf '    %s  api %s  fanout %s  raft %s  (--cluster-state %s)\n' "${names[$i]}" \
        "${apis[$i]}" "${fanouts[$i]}" "${rafts[$i]}" "${states[$i]}" >&2
done
say "clients take the list: herald --endpoint $endpoints ..."
say "check it: tools/herald cluster status --endpoint $endpoints"
say "Ctrl-C stops every node"

# alive PID: the process runs (an exited child stays a zombie until it is
# waited for, and kill -0 still finds it)
alive () {
    local stat
    read -r stat 2>/dev/null </proc/"$1"/stat || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

stopping=""
stop_all () {
    [ -n "$stopping" ] && return
    stopping=1
    local pid deadline left=()
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    deadline=$((SECONDS + stop_wait))
    for pid in "${pids[@]}"; do
        while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        alive "$pid" && left+=("$pid")
    done
    for pid in "${left[@]}"; do
        say "a node (pid $pid) did not stop within $stop_wait s of SIGTERM: killing it"
        kill -KILL "$pid" 2>/dev/null
    done
}
trap 'stop_all' INT TERM HUP
trap 'stop_all' EXIT

# Each node in a session of its own (setsid), so that it gets exactly one
# signal to stop, run.sh's SIGTERM: Ctrl-C in a terminal goes to the whole
# foreground process group, and a heraldd given SIGINT and then SIGTERM
# while it stops does not always stop cleanly.  Each node's lines go
# through a prefixer that ignores Ctrl-C, which stays in run.sh's group: a
# prefixer gone first would cut a node's last lines off (and end it by
# SIGPIPE, not cleanly).
width=${#names[$((nodes - 1))]}
for k in $(seq 1 "$nodes"); do
    i=$((k - 1))
    prefix=$(printf '%-*s | ' "$width" "${names[$i]}")
    setsid "$heraldd" --node "${names[$i]}" --data-dir "$var/${names[$i]}" "${peers[@]}" \
        --cluster-state "${states[$i]}" ${passed[@]+"${passed[@]}"} \
        > >(trap '' INT TERM; exec sed -u "s/^/$prefix/") 2>&1 &
    pids+=($!)
done

# Up when one node leads and the others agree; a node that exits before
# that is a failed start, and the rest are stopped.
status=0
ready=""
deadline=$((SECONDS + ready_wait))
while [ -z "$ready" ] && [ -z "$stopping" ]; do
    for i in "${!pids[@]}"; do
        if ! alive "${pids[$i]}"; then
            wait "${pids[$i]}"
            say "${names[$i]} exited (status $?) before the cluster was up: stopping the" \
                "others (its lines above say why)"
            stop_all
            exit 1
        fi
    done
    if "$herald" cluster status --endpoint "$endpoints" --timeout 500 >/dev/null 2>&1; then
        ready=1
    elif [ "$SECONDS" -ge "$deadline" ]; then
        say "no leader after $ready_wait s; the nodes go on (Ctrl-C stops them):"
        "$herald" cluster status --endpoint "$endpoints" --timeout 1000 --format table >&2
        ready=0
    else
        sleep 0.2
    fi
done
if [ "$ready" = 1 ]; then
    say "the cluster is up:"
    "$herald" cluster status --endpoint "$endpoints" --timeout 1000 --format table >&2
fi

# Until every node has exited: one that exits on its own is reported
running=${#pids[@]}
declare -A gone=()
while [ "$running" -gt 0 ]; do
    live=()
    for i in "${!pids[@]}"; do
        [ -n "${gone[$i]:-}" ] || live+=("${pids[$i]}")
    done
    done_pid=""
    # (stderr: bash's own "Killed ..." line for a node killed by a signal;
    # the report below says it)
    wait -n -p done_pid "${live[@]}" 2>/dev/null
    code=$?
    done_pid=${done_pid:-}
    # no pid: a signal ended the wait (the trap ran stop_all), or none of
    # them is left to wait for (127)
    [ -z "$done_pid" ] && [ "$code" -eq 127 ] && break
    for i in "${!pids[@]}"; do
        [ "${pids[$i]}" = "$done_pid" ] || continue
        gone[$i]=1
        running=$((running - 1))
        if [ -z "$stopping" ]; then
            say "${names[$i]} exited (status $code); the others go on. ./run.sh --cluster" \
                "$nodes again (after Ctrl-C) restarts it with the rest."
        elif [ "$code" -ne 0 ]; then
            say "${names[$i]} stopped with status $code"
            status=1
        fi
    done
done
trap - EXIT
# The prefixers end with their node's output; let them print the last lines
wait 2>/dev/null
[ -n "$stopping" ] && say "every node stopped"
exit "$status"

#!/usr/bin/env bash
# Herald's run command: on a fresh Debian 12 machine (as root) it installs
# what is missing, builds, and starts heraldd in the foreground on the
# defaults (data in ./var/herald, api tcp://127.0.0.1:5580, fanout
# tcp://127.0.0.1:5581).  Arguments go to heraldd (see ./run.sh --help).
# Stop it with Ctrl-C: it commits what it holds and exits 0.
# With --cluster N it starts a local cluster of N nodes instead
# (tools/run_cluster.sh: data in ./var/cluster, node K's api on 5600+10K).
# Each setup step it takes prints one line (their output goes to
# setup.log); with nothing to install or build it prints nothing before
# heraldd's own lines.
set -euo pipefail
cd "$(dirname "$0")"
cluster=""
for arg in "$@"; do
    case $arg in
        --cluster|--cluster=*) cluster=1 ;;
        -h|--help)
            cat <<'USAGE'
usage: ./run.sh [HERALDD OPTIONS]
       ./run.sh --cluster N [--base-port P] [HERALDD OPTIONS]

Installs what is missing and builds (one line per step, their output in
setup.log), then runs in the foreground until Ctrl-C:
  one broker, heraldd (data in ./var/herald, api tcp://127.0.0.1:5580,
  fanout tcp://127.0.0.1:5581), with the options below; or
  --cluster N     a local cluster of N nodes on 127.0.0.1 (1 to 9; 3 survives
                  the loss of one node, 5 of two), node1 .. nodeN, data in
                  ./var/cluster/nodeK, each node's lines prefixed with its
                  name.  The first start bootstraps it (--cluster-state new);
                  later starts restart the same cluster (existing).  Prints
                  the endpoint list for clients (herald --endpoint E1,E2,...).
                  Ctrl-C stops every node.
  --base-port P   with --cluster: node K listens at P+10K (api), P+10K+1
                  (fanout) and P+10K+2 (Raft); P is 5600 by default, so node1
                  is at 5610/5611/5612, node2 at 5620/5621/5622, ...
  Other options go to heraldd, or to every node of the cluster
  (--election-ms 300, --log-level debug, ...): heraldd's own help follows.

USAGE
            ;;
    esac
done
source tools/setup.sh
herald_setup
if [ -n "$cluster" ]; then
    exec tools/run_cluster.sh "$@"
fi
exec broker/heraldd "$@"

#!/usr/bin/env bash
# Herald's run command: on a fresh Debian 12 machine (as root) it installs
# what is missing, builds, and starts heraldd in the foreground on the
# defaults (data in ./var/herald, api tcp://127.0.0.1:5580, fanout
# tcp://127.0.0.1:5581).  Arguments go to heraldd (see ./run.sh --help).
# Stop it with Ctrl-C: it commits what it holds and exits 0.
# Each setup step it takes prints one line (their output goes to
# setup.log); with nothing to install or build it prints nothing before
# heraldd's own lines.
set -euo pipefail
cd "$(dirname "$0")"
source tools/setup.sh
herald_setup
exec broker/heraldd "$@"

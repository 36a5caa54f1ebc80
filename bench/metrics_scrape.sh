#!/bin/sh
#   metrics_scrape - what scraping heraldd --metrics costs the broker
#
#   Starts heraldd (built in this tree) on free ports with --metrics and a
#   fresh data directory, then for each of RUNS rounds: `herald pub --count
#   EVENTS` alone, and again while a client scrapes /metrics as fast as it
#   can (one connection per scrape).  Prints each run's events/s and the
#   scraper's rate, and the time of single scrapes of /metrics and /healthz.
#   A figure, not a test: the machine's noise is in it (docs/metrics.md).
#
#       bench/metrics_scrape.sh [EVENTS [RUNS]]     # defaults: 200000 3

set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
events=${1:-200000}
runs=${2:-3}
dir=$(mktemp -d "${TMPDIR:-/tmp}/herald-metrics-bench-XXXXXX")
broker=
scraper=
cleanup () {
    [ -z "$scraper" ] || kill "$scraper" 2>/dev/null || true
    [ -z "$broker" ] || { kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; }
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

ports=$(/usr/bin/python3 -c '
import socket
held = [socket.socket() for _ in range(3)]
for s in held: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))')
set -- $ports
api=$1 fanout=$2 metrics=$3
"$here/broker/heraldd" --data-dir "$dir/data" --api "tcp://127.0.0.1:$api" \
    --fanout "tcp://127.0.0.1:$fanout" --metrics "127.0.0.1:$metrics" --min-free 0 \
    >"$dir/heraldd.log" 2>&1 &
broker=$!
tries=0
until "$here/tools/herald" --endpoint ":$api" status >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 100 ] || { echo "heraldd did not start:"; cat "$dir/heraldd.log"; exit 1; }
    sleep 0.1
done

#   scrape PORT PATH COUNT: COUNT requests in a row, the mean time; scrape
#   PORT PATH 0 STOPFILE: as fast as it can until STOPFILE exists, the rate
cat >"$dir/scrape.py" <<'EOF'
import os, socket, sys, time
port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
stop = sys.argv[4] if len(sys.argv) > 4 else None
request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path).encode()
done, start = 0, time.monotonic()
while (count and done < count) or (stop and not os.path.exists(stop)):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    while s.recv(65536):
        pass
    s.close()
    done += 1
took = time.monotonic() - start
if count:
    print("%d GET %s in a row: %.0f us each" % (done, path, took / done * 1e6))
else:
    print("  scraper: %d scrapes of %s, %.0f a second" % (done, path, done / took))
EOF

/usr/bin/python3 "$dir/scrape.py" "$metrics" /metrics 500
/usr/bin/python3 "$dir/scrape.py" "$metrics" /healthz 500
round=1
while [ "$round" -le "$runs" ]; do
    printf 'run %d, no scraper:   ' "$round"
    "$here/tools/herald" --endpoint ":$api" pub bench.alone --count "$events" 2>/dev/null
    rm -f "$dir/stop"
    /usr/bin/python3 "$dir/scrape.py" "$metrics" /metrics 0 "$dir/stop" &
    scraper=$!
    printf 'run %d, with scraper: ' "$round"
    "$here/tools/herald" --endpoint ":$api" pub bench.scraped --count "$events" 2>/dev/null
    touch "$dir/stop"
    wait "$scraper"
    scraper=
    round=$((round + 1))
done

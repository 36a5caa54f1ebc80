#!/bin/bash
#  trim_e2e - herald trim end to end against a real heraldd: publish N
#  events (default 1000000) of a ~110-byte JSON order, archive them, then
#  time herald trim --archive --dry-run (the tool's check of the archive
#  and its ids digest), herald trim --archive (the same, plus the broker's
#  proof: its own digest of the ids) and the background reclaim, with the
#  data directory's size before and after.  Prints figures; no assertion.
#  Usage: bench/trim_e2e.sh [N]   (after make)
set -u
cd "$(dirname "$0")/.." || exit 1
N=${1:-1000000}
T=$(mktemp -d "${TMPDIR:-/tmp}/trim_e2e.XXXXXX")
port () { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
P=$(port); F=$(port)
./broker/heraldd --data-dir "$T/data" --api tcp://127.0.0.1:$P --fanout tcp://127.0.0.1:$F >"$T/log" 2>&1 &
B=$!
trap 'kill $B 2>/dev/null; wait $B 2>/dev/null; rm -rf "$T"' EXIT
for _ in $(seq 1 100); do ./tools/herald --endpoint 127.0.0.1:$P --timeout 200 status >/dev/null 2>&1 && break; sleep 0.1; done
H=(./tools/herald --endpoint 127.0.0.1:$P --timeout 20000)
now () { python3 -c 'import time; print(time.monotonic())'; }
took () { python3 -c "import sys; print('%.2f s' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }
status () { "${H[@]}" status | python3 -c 'import json,sys
s = json.load(sys.stdin)
print(" ".join("%s %s" % (k, s.get(k)) for k in sys.argv[1:]))' "$@"; }
payload='{"order":"A-1029384","customer":"c-48213","items":[{"sku":"SKU-1","qty":2,"price":19.99}],"currency":"EUR"}'
echo "publish: $("${H[@]}" pub orders.eu "$payload" --count "$N" --batch 1000 2>&1 | tail -1)"
"${H[@]}" archive --until-seq "$N" --to "$T/arc" >/dev/null 2>&1
echo "archive: $(du -sb "$T/arc" | cut -f1) bytes; the data directory $(du -sb "$T/data" | cut -f1) bytes"
s=$(now); "${H[@]}" trim --archive "$T/arc" --dry-run >/dev/null; e=$(now)
echo "trim --dry-run (check the archive, digest $N ids): $(took "$s" "$e")"
s=$(now); out=$("${H[@]}" trim --archive "$T/arc"); e=$(now)
echo "trim: $(took "$s" "$e"): $out"
s=$(now)
for _ in $(seq 1 1200); do
    [ "$(status reclaim_pending)" = "reclaim_pending 0" ] && break
    sleep 0.5
done
e=$(now)
echo "reclaim: done within $(took "$s" "$e") ($(status reclaimed_events first))"
"${H[@]}" pub orders.eu x >/dev/null 2>&1     #  a write, so the broker's counters settle
kill -TERM $B; wait $B 2>/dev/null
echo "after the reclaim: the data directory $(du -sb "$T/data" | cut -f1) bytes (the ids of the $N trimmed events stay)"

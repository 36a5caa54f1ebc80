#!/bin/bash
#  archive_e2e - herald archive end to end against a real heraldd: publish
#  N events (default 1000000) of a ~180-byte JSON order, archive them, then
#  time herald replay from the broker and from the archive (JSON, to a
#  file; the two outputs must be identical) and archive verify.  Prints
#  figures; no assertion.  Usage: bench/archive_e2e.sh [N]   (after make)
set -u
cd "$(dirname "$0")/.." || exit 1
N=${1:-1000000}
T=$(mktemp -d "${TMPDIR:-/tmp}/archive_e2e.XXXXXX")
port () { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
P=$(port); F=$(port)
./broker/heraldd --data-dir "$T/data" --api tcp://127.0.0.1:$P --fanout tcp://127.0.0.1:$F >"$T/log" 2>&1 &
B=$!
trap 'kill $B 2>/dev/null; wait $B 2>/dev/null; rm -rf "$T"' EXIT
for _ in $(seq 1 100); do ./tools/herald --endpoint 127.0.0.1:$P --timeout 200 status >/dev/null 2>&1 && break; sleep 0.1; done
H=(./tools/herald --endpoint 127.0.0.1:$P --timeout 20000)
now () { python3 -c 'import time; print(time.monotonic())'; }
took () { python3 -c "import sys; print('%.2f s' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }
payload='{"order":"A-1029384","customer":"c-48213","items":[{"sku":"SKU-1","qty":2,"price":19.99},{"sku":"SKU-77","qty":1,"price":5.5}],"currency":"EUR","note":"leave at the door"}'
echo "publish: $("${H[@]}" pub orders.eu "$payload" --count "$N" --batch 1000 --type order.placed --meta source=web 2>&1 | tail -1)"
s=$(now); out=$("${H[@]}" archive --until-seq "$N" --to "$T/arc" 2>/dev/null); e=$(now)
echo "archive: $out in $(took "$s" "$e")"
echo "sizes: archive $(du -sb "$T/arc" | cut -f1) bytes, the broker's data dir $(du -sb "$T/data" | cut -f1) bytes"
s=$(now); "${H[@]}" replay --format json >"$T/a.json"; e=$(now)
echo "replay from the broker (json): $(took "$s" "$e")"
s=$(now); ./tools/herald replay --archive "$T/arc" --format json >"$T/b.json"; e=$(now)
echo "replay --archive (json): $(took "$s" "$e"), $(wc -l <"$T/b.json") lines, $(stat -c %s "$T/b.json") bytes"
cmp -s "$T/a.json" "$T/b.json" && echo "the two outputs are identical" || echo "THE OUTPUTS DIFFER"
s=$(now); ./tools/herald archive verify "$T/arc"; e=$(now)
echo "verify: $(took "$s" "$e")"

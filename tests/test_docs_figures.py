#!/usr/bin/python3
"""test_docs_figures - the README's comparison figures are the results'

The README sums up bench/results/compare.csv in a sentence: catch-up,
the log server's memory, disk per event, each as "Herald's figure against
NATS's and Redis's".  A reader cannot tell two bare numbers apart, and
once the order was flipped.  So:

  - a figure list "against A and B" must name whose each figure is
    ("against A for NATS and B for Redis");
  - each named figure, and Herald's before it, must be the median that
    compare.csv holds for that system (within 1 %, the rounding shown).

A sentence the README no longer has is skipped, not failed (the figures
it quotes may change; what it quotes must be true).  Prints one line per
check and "N passed, M failed"; exit 1 on any failure.
"""

import csv
import os
import pathlib
import re
import sys

SRC = pathlib.Path(os.environ.get("HERALD_SRCDIR", pathlib.Path(__file__).resolve().parent.parent))

#  What each sentence measures: its keyword, then compare.csv's row.
METRICS = {
    "catch-up": ("catchup", "replay from the first event"),
    "memory": ("resources", "peak RSS, log server"),
    "disk per event": ("resources", "disk per event"),
}
NUMBER = r"[\d.,]+(?:\s*[kM](?![A-Za-z]))?"     # 288k, 1.22 M; not the M of MiB
CLAIM = re.compile(
    r"(?P<metric>catch-up|memory|disk per event)\s*\((?P<herald>" + NUMBER + r")\s*[A-Za-z/]*\s+"
    r"against\s+(?P<a>" + NUMBER + r")\s*[A-Za-z/]*\s+for\s+(?P<sa>NATS|Redis)\s+and\s+"
    r"(?P<b>" + NUMBER + r")\s*[A-Za-z/]*\s+for\s+(?P<sb>NATS|Redis)\)")
BARE = re.compile(r"against\s+(" + NUMBER + r")\s*[A-Za-z/]*\s+and\s+(" + NUMBER + r")(?!\s*[A-Za-z/]*\s+for)")

passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    print(("ok:   " if ok else "FAIL: ") + what)
    if ok:
        passed += 1
    else:
        failed += 1


def value(text):
    text = text.replace(",", "").replace(" ", "")
    scale = {"k": 1e3, "M": 1e6}.get(text[-1], 1)
    return float(text.rstrip("kM")) * scale


def medians():
    table = {}
    with open(SRC / "bench/results/compare.csv", newline="") as f:
        for row in csv.DictReader(f):
            table[(row["system"], row["workload"], row["case"])] = float(row["median"])
    return table


readme = " ".join((SRC / "README.md").read_text(encoding="utf-8").split())
table = medians()

for match in BARE.finditer(readme):
    check(False, "README: %r names no system for its figures" % match.group(0))

found = {m.group("metric"): m for m in CLAIM.finditer(readme)}
for metric, (workload, case) in METRICS.items():
    match = found.get(metric)
    if not match:
        print("skip: README quotes no %s figures" % metric)
        continue
    claims = [("herald", match.group("herald")),
              (match.group("sa").lower(), match.group("a")),
              (match.group("sb").lower(), match.group("b"))]
    for system, text in claims:
        rows = [v for (s, w, c), v in table.items() if s == system and w == workload and c == case]
        if len(rows) != 1:
            check(False, "%s: compare.csv has %d rows for %s" % (metric, len(rows), system))
            continue
        claimed, actual = value(text), rows[0]
        check(abs(claimed - actual) <= 0.01 * actual,
              "%s, %s: README says %s, compare.csv %g" % (metric, system, text.strip(), actual))

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)

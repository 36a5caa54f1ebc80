#!/bin/bash
#  =========================================================================
#  test_bench_charts - the comparison's charts say what they show (issue 12)
#
#  Redraws bench/results' charts from its runs.csv with
#  `bench/compare/run.sh --charts-only --out TMP` (nothing is built or run)
#  and checks the gnuplot scripts and data it writes:
#    - no y format that rounds tick labels into repeats ("1M, 1M, 1M"):
#      events/s are scaled to thousands or millions and printed with %g;
#    - every bar has a min-max whisker (histogram errorbars, 3 columns);
#    - within a chart no two series share a colour and fill;
#    - resources.png has two panels, one in MiB and one in bytes;
#    - the p99 chart says it is at saturation, the sync chart why NATS
#      has no bar, every publish chart which client batches;
#    - a run from a dirty tree says DIRTY TREE on every chart and at the
#      top of summary.md, a clean one does not;
#    - run.sh refuses to measure a tree with uncommitted changes.
#  When bench/compare/compare is built, it also runs Herald's publish part
#  briefly and checks the one-event-per-PUBLISH rows (publish_one): events
#  ACKed, no errors.
#  Skipped (77) without python3 or gnuplot.
#  =========================================================================

set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${HERALD_SRCDIR:-$HERE/..}
BUILD=${HERALD_BUILDDIR:-$HERE/..}
for tool in python3 gnuplot git; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done

TMP=$(mktemp -d /tmp/test_bench_charts.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
check () {
    local what=$1; shift
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $what"; fi
}

#  1. The kept run (machine.md says a33d9c1-dirty), redrawn
#  The kept run's data, said to come from a dirty tree (whatever the kept
#  run was: the checks below must not depend on it)
mkdir -p "$TMP/dirty"
cp "$SRC/bench/results/runs.csv" "$TMP/dirty/"
sed 's/^| herald | .*/| herald | abc1234-dirty: DIRTY TREE (uncommitted changes) |/' \
    "$SRC/bench/results/machine.md" > "$TMP/dirty/machine.md"
if ! timeout 120 "$SRC/bench/compare/run.sh" --charts-only --out "$TMP/dirty" 2>"$TMP/err"; then
    cat "$TMP/err"
    echo "FAIL: run.sh --charts-only"
    exit 1
fi
CHARTS="publish_sync publish_async publish_p99 fanout fanout_latency catchup sparse resources"
for chart in $CHARTS; do
    gp="$TMP/dirty/$chart.gp"
    check "$chart.png drawn" test -s "$TMP/dirty/$chart.png"
    check "$chart: no rounding SI format" bash -c "! grep -q '%.0s%c' '$gp'"
    check "$chart: y tick labels exact (%g)" grep -q 'set format y "%g"' "$gp"
    check "$chart: min-max whiskers" grep -q 'histogram errorbars' "$gp"
    check "$chart: DIRTY TREE on the chart" grep -q 'DIRTY TREE' "$gp"
    #  Each plotted series' colour and fill, per plot command: no repeat
    dups=$(awk '/^plot /{n++} /lc rgb/{match($0, /lc rgb "[^"]*" fs [a-z]+ [0-9.]+/);
                print n, substr($0, RSTART, RLENGTH)}' "$gp" | sort | uniq -d)
    #  (or, as report.py once wrote, a word list of colours for a plot loop)
    dups="$dups$(sed -n 's/^colors = "\(.*\)"/\1/p' "$gp" | tr ' ' '\n' | sort | uniq -d)"
    check "$chart: a colour per series ($dups)" test -z "$dups"
done
#  Events/s scaled: no value in a throughput chart's data above 10,000
for chart in publish_sync publish_async fanout catchup; do
    big=$(grep -v '^#' "$TMP/dirty/$chart.dat" | tr '\t' '\n' | grep -E '^[0-9.e+]+$' \
          | awk '$1 > 10000' | head -1)
    check "$chart: scaled to thousands or millions (saw $big)" test -z "$big"
    check "$chart: the unit names the scale" grep -Eq 'ylabel "(thousand|million) events/s"' \
        "$TMP/dirty/$chart.gp"
done
check "resources: two panels" grep -q 'multiplot layout 1,2' "$TMP/dirty/resources.gp"
check "resources: a MiB axis" grep -q 'ylabel "MiB"' "$TMP/dirty/resources.gp"
check "resources: a bytes axis" grep -q 'ylabel "bytes per event"' "$TMP/dirty/resources.gp"
check "resources: no mixed axis" bash -c "! grep -q 'MiB / bytes' '$TMP/dirty/resources.gp'"
check "p99: at saturation" grep -q 'AT SATURATION' "$TMP/dirty/publish_p99.gp"
check "sync: why NATS is absent" grep -q 'No NATS JetStream bar' "$TMP/dirty/publish_sync.gp"
for chart in publish_sync publish_async publish_p99; do
    check "$chart: who batches" grep -q '100 events per request' "$TMP/dirty/$chart.gp"
    check "$chart: NATS one per event" grep -q 'one message per event' "$TMP/dirty/$chart.gp"
done
check "summary: DIRTY TREE at the top" bash -c "sed -n 3p '$TMP/dirty/summary.md' | grep -q 'DIRTY TREE'"
check "compare.csv: p99 spread" grep -q 'p99_min_ms,p99_max_ms' "$TMP/dirty/compare.csv"

#  2. The same data said to come from a clean tree: no DIRTY TREE
mkdir -p "$TMP/clean"
cp "$TMP/dirty/runs.csv" "$TMP/clean/"
sed 's/^| herald | .*/| herald | abc1234 (clean tree) |/' "$TMP/dirty/machine.md" > "$TMP/clean/machine.md"
timeout 120 "$SRC/bench/compare/run.sh" --charts-only --out "$TMP/clean" 2>/dev/null
check "clean: no DIRTY TREE" bash -c "! grep -l 'DIRTY TREE' '$TMP'/clean/*.gp '$TMP/clean/summary.md'"
check "clean: the commit in the footer" grep -q 'herald abc1234 ' "$TMP/clean/fanout.gp"

#  3. run.sh refuses a dirty tree before it installs, builds or runs anything
repo="$TMP/repo"
mkdir -p "$repo/bench/compare"
cp "$SRC/bench/compare/run.sh" "$repo/bench/compare/"
echo one > "$repo/file"
git -C "$repo" init -q && git -C "$repo" add . \
    && git -C "$repo" -c user.name=t -c user.email=t@t commit -qm one
echo two >> "$repo/file"
timeout 30 "$repo/bench/compare/run.sh" --quick --out "$TMP/out" >"$TMP/refused" 2>&1
rc=$?
check "dirty tree refused (exit $rc)" test "$rc" -eq 1
check "refusal names the file" grep -q 'M file' "$TMP/refused"
check "refusal says how to go on" grep -q -- '--allow-dirty' "$TMP/refused"
check "nothing measured" test ! -e "$TMP/out/runs.csv"
#  ... but not for a change under bench/results, where the figures go (it
#  then goes on to tools/setup.sh, which this bare repo does not have)
git -C "$repo" checkout -q file
mkdir -p "$repo/bench/results" && echo old > "$repo/bench/results/runs.csv"
git -C "$repo" add . && git -C "$repo" -c user.name=t -c user.email=t@t commit -qm two
echo new > "$repo/bench/results/runs.csv"
timeout 30 "$repo/bench/compare/run.sh" --quick --out "$TMP/out" >"$TMP/results" 2>&1
check "a change in bench/results is not a dirty tree" bash -c "! grep -q 'uncommitted' '$TMP/results'"

#  4. Herald with one event per PUBLISH, when compare is built
compare="$BUILD/bench/compare/compare"
if [ -x "$compare" ] && [ -x "$BUILD/broker/heraldd" ]; then
    HERALD_BUILDDIR="$BUILD" timeout 300 "$compare" --systems herald --parts publish \
        --seconds 0.5 --csv "$TMP/one.csv" 2>"$TMP/one.err"
    rows=$(grep -c ',publish_one,' "$TMP/one.csv")
    check "publish_one: 8 rows (saw $rows)" test "$rows" -eq 8
    #  The value (ev/s) above 0: field 8, the case ("100 B, 1 pub") being two
    bad=$(awk -F, '$5 == "publish_one" && !($8 + 0 > 0) {print}' "$TMP/one.csv")
    check "publish_one: events ACKed in every case" test -z "$bad"
    check "publish_one: no errors" bash -c "! grep -q 'publish_one.*errors' '$TMP/one.csv'"
    check "publish_one: its CPU rows" grep -q ',cpu_one,' "$TMP/one.csv"
else
    echo "skipped: bench/compare/compare not built (no libnats or hiredis)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

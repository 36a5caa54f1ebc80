#!/usr/bin/env bash
# Herald beside NATS JetStream and Redis Streams, on this machine, in one run.
#
#   bench/compare/run.sh [--quick] [--runs N] [--out DIR] [--allow-dirty] [-- COMPARE-ARGS...]
#   bench/compare/run.sh --charts-only [--out DIR]
#
# Installs what is missing from Debian (the peers' servers and C clients,
# gnuplot), builds Herald and bench/compare/compare, runs it N times (3 by
# default, 1 with --quick), and writes to DIR (bench/results by default):
#   runs.csv      every figure of every run (one row each)
#   compare.csv   median, min, max of each figure over the runs
#   summary.md    the tables, the machine, the problems seen
#   *.png         charts (gnuplot), fanout_latency.png for the paced fanout
#   machine.md    what this machine is, the versions measured
# compare starts every server itself on free 127.0.0.1 ports with a fresh data
# dir under /tmp and stops it; see docs/benchmarks.md.  Arguments after -- go
# to compare, e.g. -- --parts fanout --fanout-rate 10000 (the fanout saturated,
# then paced at a fixed rate for every system: 5,000 events/s by default).
#
# The figures are of a commit: run.sh refuses a tree with uncommitted changes
# to tracked files outside bench/results (git status), since nobody could
# rebuild what was measured.
# --allow-dirty measures it anyway, and says so in red on every chart and in
# machine.md, with the files that differ.
#
# --charts-only redraws compare.csv, summary.md and the charts from DIR's
# runs.csv and machine.md, as they are: nothing is installed, built or run
# (python3 and gnuplot must be there).
#
# Beware: on a 2-core VM, steal time and other tenants move every latency tail;
# check the load averages in machine.md, and compare systems within one run.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=""
quick=()
out="$top/bench/results"
extra=()
allow_dirty=""
charts_only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=(--quick); shift ;;
        --allow-dirty) allow_dirty=1; shift ;;
        --charts-only) charts_only=1; shift ;;
        --runs) runs="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
[ -n "$runs" ] || { [ ${#quick[@]} -gt 0 ] && runs=1 || runs=3; }
case "$runs" in ''|*[!0-9]*) echo "run.sh: --runs wants a number" >&2; exit 2 ;; esac

# 0. Only the charts, from the runs already there
if [ -n "$charts_only" ]; then
    for file in runs.csv machine.md; do
        [ -f "$out/$file" ] || { echo "run.sh: --charts-only: no $out/$file (run the bench first)" >&2; exit 1; }
    done
    for tool in python3 gnuplot; do
        command -v "$tool" >/dev/null || { echo "run.sh: --charts-only needs $tool (apt-get install ${tool/gnuplot/gnuplot-nox})" >&2; exit 1; }
    done
    python3 "$top/bench/compare/report.py" "$out"
    echo "run.sh: redrew $out/summary.md, $out/compare.csv and the charts from $out/runs.csv" >&2
    exit 0
fi

# The commit measured: a dirty tree is refused unless --allow-dirty
commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?')
# (bench/results is where the figures go: what it holds is not what is measured)
dirty_files=$(git -C "$top" status --porcelain --untracked-files=no -- . ':!bench/results' \
              2>/dev/null || true)
if [ -n "$dirty_files" ] && [ -z "$allow_dirty" ]; then
    echo "run.sh: the tree has uncommitted changes, so the figures would be of no commit:" >&2
    echo "$dirty_files" | head -20 | sed 's/^/    /' >&2
    echo "run.sh: commit or stash them, or pass --allow-dirty (the charts then say DIRTY TREE)" >&2
    exit 1
fi

# 1. Packages and build: tools/setup.sh installs Herald's packages (the peers'
# among them) and builds the tree; the peers' servers and gnuplot are ours.
# shellcheck source=../../tools/setup.sh
source "$top/tools/setup.sh"
missing=()
for package in nats-server redis-server libnats-dev libhiredis-dev gnuplot-nox python3; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "run.sh: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
# Debian starts redis-server as a service on install: ours run on their own ports
herald_setup
build="${herald_build:-$top}"
if ! make -C "$build" -n bench/compare/compare >/dev/null 2>&1; then
    # configured before libnats/hiredis were there: configure again
    (cd "$build" && ./config.status --recheck >/dev/null && ./config.status >/dev/null)
fi
make -C "$build" -j"$(nproc 2>/dev/null || echo 2)" bench/compare/compare broker/heraldd >/dev/null
export HERALD_BUILDDIR="$build"

# 2. The machine
mkdir -p "$out"
{
    echo "# The machine of this run"
    echo
    echo "| what | value |"
    echo "|---|---|"
    echo "| date | $(date -u '+%Y-%m-%d %H:%M UTC') |"
    echo "| mode | $([ ${#quick[@]} -gt 0 ] && echo 'QUICK (short cases, 100,000-event log): noisy' || echo 'full'); $runs run(s) |"
    echo "| cpu | $(nproc) online, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') |"
    echo "| memory | $(grep MemTotal /proc/meminfo | awk '{printf "%.1f GiB", $2/1048576}') |"
    echo "| kernel | $(uname -sr) |"
    echo "| os | $(. /etc/os-release && echo "$PRETTY_NAME") |"
    echo "| /tmp filesystem | $(df -T /tmp | awk 'NR==2 {print $2 " on " $7 " (" $1 ")"}') |"
    echo "| load average at the start | $(cut -d' ' -f1-3 /proc/loadavg) |"
    if [ -n "$dirty_files" ]; then
        echo "| herald | $commit-dirty: **DIRTY TREE, these figures are of no commit**; uncommitted: $(echo "$dirty_files" | awk '{print $2}' | head -20 | paste -sd' ' -) |"
    else
        echo "| herald | $commit (clean tree) |"
    fi
    echo "| nats-server | $(nats-server --version 2>&1 | head -1) |"
    echo "| redis-server | $(redis-server --version | awk '{print $3}') |"
    echo "| rocksdb | $(dpkg-query -W -f='${Version}' librocksdb-dev 2>/dev/null) |"
    echo "| libzmq / czmq | $(pkg-config --modversion libzmq) / $(pkg-config --modversion libczmq) |"
    echo "| libnats / hiredis | $(pkg-config --modversion libnats) / $(pkg-config --modversion hiredis) |"
} > "$out/machine.md"

# 3. The runs
echo "run,system,durability,class,workload,case,value,unit,p50_ms,p99_ms,p999_ms,count,note" \
    > "$out/runs.csv"
: > "$out/progress.log"
status=0
# CPU time the hypervisor gave to others (steal) over the runs: on a shared VM
# it, more than anything of ours, sets the latency tails
cpu_start=$(grep '^cpu ' /proc/stat)
for run in $(seq 1 "$runs"); do
    echo "run.sh: run $run of $runs (progress in $out/progress.log)" >&2
    "$build/bench/compare/compare" ${quick[@]+"${quick[@]}"} --run "$run" --csv "$out/runs.csv" \
        ${extra[@]+"${extra[@]}"} 2>> "$out/progress.log" || status=1
    grep -E '^compare: (run|problems)' "$out/progress.log" | tail -1 >&2 || true
done
echo "| load average at the end | $(cut -d' ' -f1-3 /proc/loadavg) |" >> "$out/machine.md"
echo "$cpu_start" "$(grep '^cpu ' /proc/stat)" | awk '{
    for (i = 2; i <= 9; i++) { before += $i; after += $(i + 11) }
    if (after > before) printf "| CPU steal over the runs | %.1f%% |\n", 100 * ($20 - $9) / (after - before)
}' >> "$out/machine.md"

# 4. Table and charts
python3 "$top/bench/compare/report.py" "$out"
echo "run.sh: wrote $out/summary.md, $out/compare.csv and the charts" >&2
exit $status

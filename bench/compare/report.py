#!/usr/bin/env python3
"""Turn bench/compare's runs.csv into compare.csv, summary.md and PNG charts.

    report.py DIR     (DIR holds runs.csv and machine.md; run.sh calls this)

Every figure is the median over the runs, with its spread: (max - min) / median.
Charts are drawn by gnuplot (pngcairo) from .dat files written beside them.
"""

import csv
import os
import re
import statistics
import subprocess
import sys
from collections import OrderedDict, Counter

SYSTEMS = ["herald", "nats", "redis", "raw"]
PUB_CASES = ["100 B, 1 pub", "100 B, 4 pub", "1 KiB, 1 pub", "1 KiB, 4 pub"]
FAN_CASES = ["1 sub", "4 sub", "16 sub"]
# The fanout columns: the relaxed durability each system's fanout runs with
FAN_COLS = [("herald", "async", "Herald async"), ("nats", "default", "NATS JetStream"),
            ("redis", "everysec", "Redis everysec")]
# (system, durability) columns of the publish tables, by durability class
SYNC_COLS = [("herald", "sync", "Herald sync"), ("redis", "always", "Redis always, no dedup"),
             ("redis", "always+dedup", "Redis always + Lua dedup")]
ASYNC_COLS = [("herald", "async", "Herald async"), ("nats", "default", "NATS JetStream 2.9"),
              ("redis", "everysec", "Redis everysec, no dedup"),
              ("redis", "everysec+dedup", "Redis everysec + Lua dedup")]


def fnum(value):
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def load(path):
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append(row)
    return rows


def aggregate(rows):
    groups = OrderedDict()
    problems = Counter()
    for row in rows:
        if row["workload"] == "problem":
            problems[row["case"]] += 1
            continue
        key = (row["system"], row["durability"], row["workload"], row["case"])
        groups.setdefault(key, {"unit": row["unit"], "class": row["class"], "values": [],
                                "p50": [], "p99": [], "p999": [], "note": row["note"]})
        g = groups[key]
        value = float(row["value"])
        if value >= 0:
            g["values"].append(value)
        for p in ("p50", "p99", "p999"):
            if row[p + "_ms"]:
                g[p].append(float(row[p + "_ms"]))
    out = OrderedDict()
    for key, g in groups.items():
        vals = g["values"]
        med = statistics.median(vals) if vals else None
        spread = None
        if vals and len(vals) > 1 and med:
            spread = (max(vals) - min(vals)) / med * 100
        out[key] = {
            "unit": g["unit"], "class": g["class"], "median": med,
            "min": min(vals) if vals else None, "max": max(vals) if vals else None,
            "n": len(vals), "spread": spread, "note": g["note"],
            "p50": statistics.median(g["p50"]) if g["p50"] else None,
            "p99": statistics.median(g["p99"]) if g["p99"] else None,
            "p999": statistics.median(g["p999"]) if g["p999"] else None,
        }
    return out, problems


def cell(agg, key, latency=False):
    g = agg.get(key)
    if not g or g["median"] is None:
        return "-"
    text = fnum(g["median"])
    if g["spread"] is not None:
        text += f" ±{g['spread'] / 2:.0f}%"
    if latency and g["p99"] is not None:
        text += f" · p99 {fnum(g['p99'])} ms"
    return text


def median(agg, key):
    g = agg.get(key)
    return g["median"] if g else None


def write_compare_csv(agg, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["system", "durability", "class", "workload", "case", "unit", "median",
                    "min", "max", "runs", "p50_ms", "p99_ms", "p999_ms", "note"])
        for (system, durability, workload, case), g in agg.items():
            w.writerow([system, durability, g["class"], workload, case, g["unit"],
                        g["median"], g["min"], g["max"], g["n"], g["p50"], g["p99"],
                        g["p999"], g["note"]])


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(r) + " |")
    return "\n".join(lines) + "\n"


def paced_rate(agg):
    """The paced fanout's offered rate (events/s), from its rows' notes."""
    rates = Counter()
    for (_, _, workload, _), g in agg.items():
        m = re.match(r"offered (\d+) ev/s", g["note"] or "") if workload == "fanout_paced" else None
        if m:
            rates[int(m.group(1))] += 1
    return rates.most_common(1)[0][0] if rates else None


def latencies(g):
    if not g or g["p50"] is None:
        return "-"
    return " / ".join(fnum(g[p]) for p in ("p50", "p99", "p999"))


def raw_publish_key(case, durability):
    size = "173" if case.startswith("100 B") else "1098"
    return ("raw", durability, "publish", f"RocksDB batches of 1000, {size} B values")


def summary(agg, problems, out_dir):
    md = []
    machine = os.path.join(out_dir, "machine.md")
    md.append("# Herald beside NATS JetStream and Redis Streams\n")
    md.append("Medians over the runs, ± half the spread (max − min) as a share of the median. "
              "Workloads, durability equivalences and caveats: `docs/benchmarks.md`.\n")
    if os.path.exists(machine):
        md.append(open(machine).read().replace("# The machine of this run", "## Machine") + "\n")

    for title, cols, dur in (("ACK after fsync (class sync)", SYNC_COLS, "sync"),
                             ("ACK before fsync (class async)", ASYNC_COLS, "async")):
        md.append(f"## Publish, {title}: events/s · ACK p99\n")
        header = ["case"] + [c[2] for c in cols] + [f"raw RocksDB {dur} (limit)", "Herald / raw"]
        rows = []
        for case in PUB_CASES:
            r = [case] + [cell(agg, (s, d, "publish", case), True) for s, d, _ in cols]
            raw = median(agg, raw_publish_key(case, dur))
            r.append(fnum(raw))
            h = median(agg, ("herald", cols[0][1], "publish", case))
            r.append(f"{100 * h / raw:.0f}%" if h and raw else "-")
            rows.append(r)
        md.append(table(header, rows))
        md.append("\nACK latency p50 / p99 / p99.9 (ms):\n\n")
        rows = []
        for case in PUB_CASES:
            r = [case]
            for s, d, _ in cols:
                g = agg.get((s, d, "publish", case))
                r.append(" / ".join(fnum(g[p]) for p in ("p50", "p99", "p999")) if g else "-")
            rows.append(r)
        md.append(table(["case"] + [c[2] for c in cols], rows))
        md.append("\nServer CPU per ACKed event, µs (all the server's threads, over the case):\n\n")
        rows = [[case] + [cell(agg, (s, d, "cpu", case)) for s, d, _ in cols]
                for case in PUB_CASES]
        md.append(table(["case"] + [c[2] for c in cols], rows) + "\n")

    md.append("## Fanout: delivered events/s (all subscribers) · publish-to-deliver p99\n")
    fan_cols = [("herald", "async"), ("nats", "default"), ("redis", "everysec")]
    rows = []
    for case in FAN_CASES:
        r = [case] + [cell(agg, (s, d, "fanout", case), True) for s, d in fan_cols]
        raw = median(agg, ("raw", "-", "fanout", f"ZeroMQ PUB/SUB, {case}"))
        r.append(fnum(raw))
        h = median(agg, ("herald", "async", "fanout", case))
        r.append(f"{100 * h / raw:.0f}%" if h and raw else "-")
        rows.append(r)
    md.append(table(["subscribers", "Herald async", "NATS JetStream", "Redis everysec",
                     "raw ZeroMQ PUB/SUB", "Herald / raw"], rows))
    md.append("\nNot delivered (published × subscribers − delivered), last run's note:\n\n")
    rows = []
    for case in FAN_CASES:
        rows.append([case] + [(agg.get((s, d, "fanout", case)) or {}).get("note", "-")
                              for s, d in fan_cols])
    md.append(table(["subscribers", "Herald", "NATS", "Redis"], rows) + "\n")

    rate = paced_rate(agg)
    if rate:
        md.append(f"## Fanout at a fixed rate of {rate:,} events/s\n")
        md.append(f"Every system's publisher paced to {rate:,} events/s (a tick of events every "
                  "millisecond, each event stamped with its tick's deadline, so a publisher held "
                  "back counts the wait), while 1, 4, 16 subscribers read: the same offered load "
                  "for all, well below each one's saturated figure above, so the latencies "
                  "compare at equal load. Publish-to-deliver latency p50 / p99 / p99.9 (ms):\n\n")
        rows = [[case] + [latencies(agg.get((s, d, "fanout_paced", case))) for s, d, _ in FAN_COLS]
                for case in FAN_CASES]
        md.append(table(["subscribers"] + [c[2] for c in FAN_COLS], rows))
        md.append("\nDelivered events/s (all subscribers), and what was not delivered "
                  "(published × subscribers − delivered, last run's note):\n\n")
        rows = []
        for case in FAN_CASES:
            r = [case]
            for s, d, _ in FAN_COLS:
                g = agg.get((s, d, "fanout_paced", case))
                note = re.sub(r"^offered \d+ ev/s; ", "", g["note"]) if g else ""
                r.append(cell(agg, (s, d, "fanout_paced", case)) + (f" · {note}" if note else ""))
            rows.append(r)
        md.append(table(["subscribers"] + [c[2] for c in FAN_COLS], rows) + "\n")

    md.append("## Catch-up and sparse read\n")
    rows = []
    for s, d in fan_cols:
        rows.append([s, cell(agg, (s, d, "build", "log of 100 B events")),
                     cell(agg, (s, d, "catchup", "replay from the first event"))])
    rows.append(["raw RocksDB", "-", cell(agg, ("raw", "-", "catchup", "RocksDB iteration"))])
    md.append(table(["system", "building the log, ev/s", "catch-up from the first event, ev/s"],
                    rows))
    md.append("\nOne topic's 1,000 events among the log (ms, best of 3 reads, median over runs):\n\n")
    rows = []
    for (system, durability, workload, case), g in agg.items():
        if workload == "sparse":
            rows.append([system, case, cell(agg, (system, durability, workload, case))])
    md.append(table(["system", "how", "ms"], rows) + "\n")

    md.append("## Resources\n")
    rows = []
    for s, d in fan_cols:
        pub = [f"{dd}: {fnum(g['median'])}" for (ss, dd, ww, cc), g in agg.items()
               if ss == s and ww == "resources" and cc == "peak RSS, publish server"]
        rows.append([s, ", ".join(pub) or "-",
                     cell(agg, (s, d, "resources", "peak RSS, fanout server")),
                     cell(agg, (s, d, "resources", "peak RSS, log server")),
                     cell(agg, (s, d, "resources", "disk per event")),
                     cell(agg, (s, d, "resources", "disk per event, at the end"))])
    md.append(table(["system", "peak RSS publish servers (MiB, per durability)",
                     "peak RSS fanout (MiB)", "peak RSS log (MiB)",
                     "disk per 100 B event, 2 s after the build (B)",
                     "the same after the reads (B)"],
                    rows) + "\n")

    md.append("## Raw limits measured in the same runs\n")
    rows = []
    for (system, durability, workload, case), g in agg.items():
        if system == "raw":
            rows.append([workload, case, durability, cell(agg, (system, durability, workload,
                                                                case)), g["unit"]])
    md.append(table(["workload", "what", "durability", "median", "unit"], rows) + "\n")

    if problems:
        md.append("## Problems seen\n")
        for text, count in problems.most_common():
            md.append(f"- {text} ({count}×)")
        md.append("")
    md.append("Charts: `publish_sync.png`, `publish_async.png`, `publish_p99.png`, "
              "`fanout.png`, " + ("`fanout_latency.png`, " if rate else "")
              + "`catchup.png`, `sparse.png`, `resources.png`.\n")
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("\n".join(md))


def color(series):
    """The same colour for a system in every chart."""
    name = series.lower()
    if name.endswith(" p50"):           # a latency chart's p50 bars: a lighter shade
        for key, rgb in (("herald", "#bcbddc"), ("nats", "#a6dba0"), ("redis", "#fdd0a2")):
            if key in name:
                return rgb
    for key, rgb in (("herald sync", "#3f007d"), ("herald async", "#807dba"),
                     ("herald", "#54278f"), ("nats", "#1b9e77"),
                     ("always + lua", "#e7298a"), ("everysec + lua", "#f1a1c8"),
                     ("always", "#d95f02"), ("everysec", "#fdb863"), ("redis", "#e6550d"),
                     ("raw", "#969696")):
        if key in name:
            return rgb
    return "#333333"


def gnuplot(out_dir, name, title, ylabel, columns, rows, logscale=False, ymin=None):
    """A clustered bar chart: rows are clusters, columns the bars in each."""
    if ymin is None:
        ymin = 1 if logscale else 0
    dat = os.path.join(out_dir, name + ".dat")
    with open(dat, "w") as f:
        f.write("case\t" + "\t".join(f'"{c}"' for c in columns) + "\n")
        for label, values in rows:
            f.write(f'"{label}"\t' + "\t".join("-" if v is None else f"{v:.6g}" for v in values)
                    + "\n")
    script = f"""set terminal pngcairo size 900,480 font ",10"
set output '{os.path.join(out_dir, name + ".png")}'
set title "{title}"
set ylabel "{ylabel}"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top
set grid ytics
set datafile missing "-"
set yrange [{ymin:g}:*]
{'set logscale y' if logscale else ''}
set xtics nomirror
set format y "{'%g' if logscale else '%.0s%c'}"
colors = "{' '.join(color(c) for c in columns)}"
plot for [i=2:{len(columns) + 1}] '{dat}' using i:xtic(1) title columnheader(i) \
    lc rgb word(colors, i - 1)
"""
    gp = os.path.join(out_dir, name + ".gp")
    with open(gp, "w") as f:
        f.write(script)
    try:
        subprocess.run(["gnuplot", gp], check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"report.py: gnuplot {name}: {error}", file=sys.stderr)


def charts(agg, out_dir):
    for dur, cols in (("sync", SYNC_COLS), ("async", ASYNC_COLS)):
        names = [c[2] for c in cols] + [f"raw RocksDB {dur}"]
        rows = [(case, [median(agg, (s, d, "publish", case)) for s, d, _ in cols]
                 + [median(agg, raw_publish_key(case, dur))]) for case in PUB_CASES]
        gnuplot(out_dir, f"publish_{dur}", f"Acknowledged publish, {dur} class (events/s)",
                "events/s", names, rows)
    cols = SYNC_COLS + ASYNC_COLS
    rows = [(case, [(agg.get((s, d, "publish", case)) or {}).get("p99") for s, d, _ in cols])
            for case in PUB_CASES]
    gnuplot(out_dir, "publish_p99", "ACK latency p99 (ms, log scale)", "ms",
            [c[2] for c in cols], rows, logscale=True)
    fan = [("herald", "async", "Herald"), ("nats", "default", "NATS JetStream"),
           ("redis", "everysec", "Redis Streams")]
    rows = [(case, [median(agg, (s, d, "fanout", case)) for s, d, _ in fan]
             + [median(agg, ("raw", "-", "fanout", f"ZeroMQ PUB/SUB, {case}"))])
            for case in FAN_CASES]
    gnuplot(out_dir, "fanout", "Fanout: delivered events/s, all subscribers", "events/s",
            [f[2] for f in fan] + ["raw ZeroMQ PUB/SUB"], rows)
    rate = paced_rate(agg)
    if rate:
        names, keys = [], []
        for p, label in (("p50", "p50"), ("p99", "p99")):
            for s, d, name in fan:
                names.append(f"{name} {label}")
                keys.append((s, d, p))
        rows = [(case, [(agg.get((s, d, "fanout_paced", case)) or {}).get(p)
                        for s, d, p in keys]) for case in FAN_CASES]
        gnuplot(out_dir, "fanout_latency",
                f"Fanout at {rate:,} events/s: publish-to-deliver latency (ms, log scale)", "ms",
                names, rows, logscale=True, ymin=0.1)
    rows = [("catch-up", [median(agg, (s, d, "catchup", "replay from the first event"))
                          for s, d, _ in fan]
             + [median(agg, ("raw", "-", "catchup", "RocksDB iteration"))])]
    gnuplot(out_dir, "catchup", "Catch-up from the first event (events/s)", "events/s",
            [f[2] for f in fan] + ["raw RocksDB iteration"], rows)
    sparse = [(k, g) for k, g in agg.items() if k[2] == "sparse"]
    rows = [("1,000 events of one topic", [g["median"] for _, g in sparse])]
    gnuplot(out_dir, "sparse", "Sparse read: one topic's 1,000 events (ms, log scale)", "ms",
            [f"{k[0]}: {k[3]}" for k, _ in sparse], rows, logscale=True)
    rows = [("peak RSS, log server (MiB)",
             [median(agg, (s, d, "resources", "peak RSS, log server")) for s, d, _ in fan]),
            ("disk per event (B)",
             [median(agg, (s, d, "resources", "disk per event")) for s, d, _ in fan])]
    gnuplot(out_dir, "resources", "Resources after the log build", "MiB / bytes",
            [f[2] for f in fan], rows)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = sys.argv[1]
    rows = load(os.path.join(out_dir, "runs.csv"))
    agg, problems = aggregate(rows)
    write_compare_csv(agg, os.path.join(out_dir, "compare.csv"))
    summary(agg, problems, out_dir)
    charts(agg, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

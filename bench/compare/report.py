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
import textwrap
from collections import OrderedDict, Counter

SYSTEMS = ["herald", "nats", "redis", "raw"]
PUB_CASES = ["100 B, 1 pub", "100 B, 4 pub", "1 KiB, 1 pub", "1 KiB, 4 pub"]
FAN_CASES = ["1 sub", "4 sub", "16 sub"]
# The fanout columns: the relaxed durability each system's fanout runs with
FAN_COLS = [("herald", "async", "Herald async"), ("nats", "default", "NATS JetStream"),
            ("redis", "everysec", "Redis everysec")]
# (system, durability) columns of the publish tables, by durability class
# and the workload: Herald's own publish batches 100 events per PUBLISH;
# publish_one sends one event per PUBLISH, as NATS's client sends one per event
SYNC_COLS = [("herald", "sync", "Herald sync, 100 events/PUBLISH", "publish"),
             ("herald", "sync", "Herald sync, 1 event/PUBLISH", "publish_one"),
             ("redis", "always", "Redis always, no dedup", "publish"),
             ("redis", "always+dedup", "Redis always + Lua dedup", "publish")]
ASYNC_COLS = [("herald", "async", "Herald async, 100 events/PUBLISH", "publish"),
              ("herald", "async", "Herald async, 1 event/PUBLISH", "publish_one"),
              ("nats", "default", "NATS JetStream 2.9", "publish"),
              ("redis", "everysec", "Redis everysec, no dedup", "publish"),
              ("redis", "everysec+dedup", "Redis everysec + Lua dedup", "publish")]
CPU_OF = {"publish": "cpu", "publish_one": "cpu_one"}


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
            "p99_min": min(g["p99"]) if g["p99"] else None,
            "p99_max": max(g["p99"]) if g["p99"] else None,
            "p50_min": min(g["p50"]) if g["p50"] else None,
            "p50_max": max(g["p50"]) if g["p50"] else None,
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
                    "min", "max", "runs", "p50_ms", "p99_ms", "p999_ms", "note",
                    "p99_min_ms", "p99_max_ms"])
        for (system, durability, workload, case), g in agg.items():
            w.writerow([system, durability, g["class"], workload, case, g["unit"],
                        g["median"], g["min"], g["max"], g["n"], g["p50"], g["p99"],
                        g["p999"], g["note"], g["p99_min"], g["p99_max"]])


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
    info = provenance(out_dir)
    if info["dirty"]:
        md.append(f"**DIRTY TREE: herald {info['herald']} had uncommitted changes, so these "
                  "figures are of no commit.**\n")
    if info["quick"]:
        md.append("**QUICK RUN: 1 s cases, a 100,000-event log, noisy: not for publishing.**\n")
    md.append("Medians over the runs, ± half the spread (max − min) as a share of the median. "
              "Workloads, durability equivalences and caveats: `docs/benchmarks.md`.\n")
    if os.path.exists(machine):
        md.append(open(machine).read().replace("# The machine of this run", "## Machine") + "\n")

    one = any(k[2] == "publish_one" for k in agg)
    md.append("Batching: Herald's own publish (\"100 events/PUBLISH\") sends 100 events per "
              "request with one ACK per request; "
              + ("the \"1 event/PUBLISH\" rows send one event per request with one ACK each, "
                 "as NATS's `js_PublishAsync` sends one message per event (like for like); "
                 if one else
                 "NATS's `js_PublishAsync` sends one message per event with one ACK each (this "
                 "data has no one-event-per-PUBLISH Herald rows: they came later); ")
              + "Redis sends one `XADD` per event, pipelined and flushed 100 at a time. "
              "Every publisher keeps 6,400 events in flight; the latencies are at saturation.\n")
    for title, all_cols, dur in (("ACK after fsync (class sync)", SYNC_COLS, "sync"),
                                 ("ACK before fsync (class async)", ASYNC_COLS, "async")):
        #  Columns of this run only (runs before publish_one existed have none)
        cols = [c for c in all_cols
                if any((c[0], c[1], c[3], case) in agg for case in PUB_CASES)]
        md.append(f"## Publish, {title}: events/s · ACK p99\n")
        header = ["case"] + [c[2] for c in cols] + [f"raw RocksDB {dur} (limit)", "Herald / raw"]
        rows = []
        for case in PUB_CASES:
            r = [case] + [cell(agg, (s, d, w, case), True) for s, d, _, w in cols]
            raw = median(agg, raw_publish_key(case, dur))
            r.append(fnum(raw))
            h = median(agg, ("herald", dur, "publish", case))
            r.append(f"{100 * h / raw:.0f}%" if h and raw else "-")
            rows.append(r)
        md.append(table(header, rows))
        if dur == "sync":
            md.append("\nNo NATS column: Debian 12's nats-server 2.9 has no fsync-before-ACK "
                      "setting.\n")
        md.append("\nACK latency p50 / p99 / p99.9 (ms):\n\n")
        rows = []
        for case in PUB_CASES:
            r = [case]
            for s, d, _, w in cols:
                g = agg.get((s, d, w, case))
                r.append(" / ".join(fnum(g[p]) for p in ("p50", "p99", "p999")) if g else "-")
            rows.append(r)
        md.append(table(["case"] + [c[2] for c in cols], rows))
        md.append("\nServer CPU per ACKed event, µs (all the server's threads, over the case):\n\n")
        rows = [[case] + [cell(agg, (s, d, CPU_OF[w], case)) for s, d, _, w in cols]
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


# ---------------------------------------------------------------------------
# Charts
#
# Every chart is a clustered bar chart drawn by gnuplot: the bar is the median
# over the runs, its whisker the min and max (a single run: no whisker).  Each
# series has its own colour (and a hatch for Herald's one-event-per-PUBLISH
# series), the key names every series, and a footer says where the data came
# from: the commit (in red when the tree was dirty), the date, the mode, and
# what the bars and whiskers are.

# (keyword in the series' label, colour, fill); the first match wins
STYLES = [
    ("herald sync, 1 event", "#3f007d", "pattern 2"),
    ("herald async, 1 event", "#6a51a3", "pattern 5"),
    ("herald sync", "#3f007d", "solid 0.85"),
    ("herald async", "#807dba", "solid 0.85"),
    ("herald: replay", "#9e9ac8", "solid 0.85"),
    ("herald p50", "#bcbddc", "solid 0.85"),
    ("herald", "#54278f", "solid 0.85"),
    ("nats jetstream p50", "#a6dba0", "solid 0.85"),
    ("nats", "#1b9e77", "solid 0.85"),
    ("redis streams p50", "#fdd0a2", "solid 0.85"),
    ("always + lua", "#e7298a", "solid 0.85"),
    ("everysec + lua", "#f1a1c8", "solid 0.85"),
    ("always", "#d95f02", "solid 0.85"),
    ("everysec", "#fdb863", "solid 0.85"),
    ("redis: scan", "#fdae6b", "solid 0.85"),
    ("redis", "#e6550d", "solid 0.85"),
    ("raw", "#969696", "solid 0.85"),
]
SPARE = ["#08519c", "#6baed6", "#a50f15", "#fb6a4a", "#525252", "#c7e9c0"]


def style(label, used):
    """The colour and fill of a series, never a colour already used in the chart."""
    name = label.lower()
    rgb, fill = "#333333", "solid 0.85"
    for key, c, f in STYLES:
        if key in name:
            rgb, fill = c, f
            break
    if (rgb, fill) in used:
        rgb = next(c for c in SPARE if (c, fill) not in used)
    used.add((rgb, fill))
    return rgb, fill


def provenance(out_dir):
    """What machine.md says of the data: {herald, date, mode, dirty, quick}."""
    info = {"herald": "?", "date": "?", "mode": "?"}
    path = os.path.join(out_dir, "machine.md")
    if os.path.exists(path):
        for line in open(path):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 2 and cells[0] in info:
                info[cells[0]] = cells[1]
    info["dirty"] = "dirty" in info["herald"].lower()
    #  "abc1234 (clean tree)", "abc1234-dirty: DIRTY TREE ...; uncommitted: ...": the commit
    info["herald"] = (info["herald"].split() or ["?"])[0].rstrip(":")
    info["quick"] = info["mode"].upper().startswith("QUICK")
    return info


def gp_text(text):
    """text as a gnuplot double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def events_scale(values):
    """Scale and unit for events/s: thousands, or millions from 1 M up."""
    top = max([v for v in values if v is not None] or [0])
    return (1e-6, "million events/s") if top >= 1e6 else (1e-3, "thousand events/s")


def series_of(agg, keys, field="median"):
    """(median, min, max) per key from agg: the value, or a latency percentile."""
    out = []
    for key in keys:
        g = agg.get(key) if key else None
        if not g or g.get(field) is None:
            out.append(None)
        elif field == "median":
            out.append((g["median"], g["min"], g["max"]))
        else:
            out.append((g[field], g.get(field + "_min"), g.get(field + "_max")))
    return out


def draw(out_dir, name, title, panels, notes=(), size=(1100, 560)):
    """panels: dicts of ylabel, clusters (labels), series [(label, [(med, lo, hi)|None])],
    and optional title, scale, log, ymin, format.  Series without any value are left out."""
    if not any(any(v is not None for _, values in panel["series"] for v in values)
               for panel in panels):
        print(f"report.py: {name}: no figures in this data, no chart", file=sys.stderr)
        return
    info = provenance(out_dir)
    dat_name, png_name = name + ".dat", name + ".png"
    blocks, plots = [], []
    single = re.search(r"\b1 run\(s\)", info["mode"]) is not None
    footer = [f"herald {info['herald']} · {info['date']} · {info['mode']} · "
              + ("bar: the one run's figure (one run: no spread to show)" if single
                 else "bar: median over the runs, whisker: min–max")]
    warnings = []
    if info["dirty"]:
        warnings.append(f"DIRTY TREE: herald {info['herald']} had uncommitted changes, so these "
                        "figures are of no commit")
    if info["quick"]:
        warnings.append("QUICK RUN: 1 s cases, a 100,000-event log, noisy: not for publishing")
    notes = [line for note in notes for line in textwrap.wrap(note, 165)]
    script = [f"set terminal pngcairo size {size[0]},{size[1]} font \",10\" noenhanced",
              f"set output '{png_name}'",
              "set style data histogram",
              "set style histogram errorbars gap 1 lw 1",
              "set boxwidth 0.9",
              "set key outside right top noautotitle",
              "set grid ytics",
              "set datafile missing \"-\"",
              "set xtics nomirror",
              "set bars front"]
    y = 0.015
    for text in footer:
        script.append(f"set label {gp_text(text)} at screen 0.01, screen {y:.3f} font \",9\"")
        y += 0.035
    for text in warnings:
        script.append(f"set label {gp_text(text)} at screen 0.01, screen {y:.3f} "
                      "font \",10\" tc rgb \"#cc0000\"")
        y += 0.035
    for text in reversed(notes):
        script.append(f"set label {gp_text(text)} at screen 0.01, screen {y:.3f} font \",9\"")
        y += 0.035
    bottom = y + 0.01
    if len(panels) > 1:
        script.append(f"set multiplot layout 1,{len(panels)} title {gp_text(title)} "
                      f"margins 0.07, 0.78, {bottom + 0.07:.3f}, 0.88 spacing 0.1")
    else:
        script.append(f"set title {gp_text(title)}")
        script.append(f"set bmargin at screen {bottom + 0.07:.3f}")
    for index, panel in enumerate(panels):
        scale = panel.get("scale", 1)
        series = [(label, values) for label, values in panel["series"]
                  if any(v is not None for v in values)]
        rows = []
        for c, cluster in enumerate(panel["clusters"]):
            cells = [gp_text(cluster)]
            for _, values in series:
                v = values[c]
                if v is None or v[0] is None:
                    cells += ["-", "-", "-"]
                else:
                    med = v[0]
                    lo = v[1] if v[1] is not None else med
                    hi = v[2] if v[2] is not None else med
                    cells += [f"{x * scale:.6g}" for x in (med, lo, hi)]
            rows.append("\t".join(cells))
        blocks.append("# " + "\t".join(["case"] + [f"{label} (median, min, max)"
                                                 for label, _ in series])
                      + "\n" + "\n".join(rows) + "\n")
        log = panel.get("log", False)
        ymin = panel.get("ymin", 1 if log else 0)
        if len(panels) > 1:
            script.append(f"set title {gp_text(panel.get('title', ''))}")
        script.append(f"set ylabel {gp_text(panel['ylabel'])}")
        script.append("set logscale y" if log else "unset logscale y")
        script.append(f"set yrange [{ymin:g}:*]")
        script.append(f"set format y {gp_text(panel.get('format', '%g'))}")
        used = set()
        terms = []
        for i, (label, _) in enumerate(series):
            rgb, fill = style(label, used)
            col = 2 + 3 * i
            source = f"'{dat_name}' index {index}" if not terms else "''"
            if terms:
                source = f"'' index {index}"
            terms.append(f"{source} using {col}:{col + 1}:{col + 2}:xtic(1) "
                         f"title {gp_text(label)} lc rgb \"{rgb}\" fs {fill} border -1")
        if terms:
            plots.append(len(terms))
            script.append("plot " + ", \\\n     ".join(terms))
            if len(panels) > 1 and index == 0:
                script.append("unset label")    # drawn once, not once per panel
    if len(panels) > 1:
        script.append("unset multiplot")
    with open(os.path.join(out_dir, dat_name), "w") as f:
        f.write("\n\n".join(blocks))
    gp = os.path.join(out_dir, name + ".gp")
    with open(gp, "w") as f:
        f.write("# " + title.replace("\n", " ") + f": drawn by bench/compare/report.py from {dat_name}\n"
                + "\n".join(script) + "\n")
    try:
        subprocess.run(["gnuplot", name + ".gp"], cwd=out_dir, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"report.py: gnuplot {name}: {error}", file=sys.stderr)


def batch_notes(agg):
    """Which client batches, said on every publish chart."""
    one = any(k[2] == "publish_one" for k in agg)
    notes = ["Batching: Herald's \"100 events/PUBLISH\" bars send 100 events per request with "
             "one ACK per request"
             + ("; its \"1 event/PUBLISH\" bars send one event per request with one ACK each, "
                "as NATS's js_PublishAsync sends one message per event, the like-for-like case."
                if one else
                ", while NATS's js_PublishAsync sends one message per event (no one-event-per-"
                "PUBLISH Herald run in this data: bench/compare has it since)."),
             "Redis sends one XADD per event, pipelined and flushed 100 at a time. Every "
             "publisher keeps 6,400 events in flight."]
    return notes


def charts(agg, out_dir):
    for dur, cols in (("sync", SYNC_COLS), ("async", ASYNC_COLS)):
        keys = [[(s, d, w, case) for case in PUB_CASES] for s, d, _, w in cols]
        raw = [raw_publish_key(case, dur) for case in PUB_CASES]
        series = [(label, series_of(agg, k)) for (_, _, label, _), k in zip(cols, keys)]
        series.append((f"raw RocksDB {dur}, batches of 1000 (limit)", series_of(agg, raw)))
        scale, unit = events_scale([v[0] for _, vs in series for v in vs if v])
        notes = batch_notes(agg)
        if dur == "sync":
            title = "Acknowledged publish, ACK after fsync (sync class)"
            notes.append("No NATS JetStream bar: Debian 12's nats-server 2.9 has no "
                         "fsync-before-ACK setting (sync_interval came in 2.10), so it has "
                         "no sync row.")
        else:
            title = "Acknowledged publish, ACK before fsync (async class)"
        draw(out_dir, f"publish_{dur}", title,
             [{"ylabel": unit, "clusters": PUB_CASES, "series": series, "scale": scale}],
             notes)
    cols = SYNC_COLS + ASYNC_COLS
    series = [(label, series_of(agg, [(s, d, w, case) for case in PUB_CASES], "p99"))
              for s, d, label, w in cols]
    draw(out_dir, "publish_p99",
         "ACK latency p99 AT SATURATION: each publisher as fast as its 6,400-event window "
         "allows\n(the latency is mostly queueing in that window: in flight / rate; "
         "ms, log scale)",
         [{"ylabel": "ms", "clusters": PUB_CASES, "series": series, "log": True}],
         batch_notes(agg) + [
          "Measured at each system's own saturated rate, not at equal load: a system that "
          "ACKs faster drains its window faster."])
    fan = [("herald", "async", "Herald async"), ("nats", "default", "NATS JetStream"),
           ("redis", "everysec", "Redis everysec")]
    series = [(label, series_of(agg, [(s, d, "fanout", case) for case in FAN_CASES]))
              for s, d, label in fan]
    series.append(("raw ZeroMQ PUB/SUB (limit)",
                   series_of(agg, [("raw", "-", "fanout", f"ZeroMQ PUB/SUB, {case}")
                                   for case in FAN_CASES])))
    scale, unit = events_scale([v[0] for _, vs in series for v in vs if v])
    notes = ["Saturated: each publisher as fast as its window allows, so each system runs at "
             "its own load (equal load: fanout_latency.png)."]
    dropped = [case for case in FAN_CASES
               if re.search(r"[1-9]\d* not delivered",
                            (agg.get(("herald", "async", "fanout", case)) or {}).get("note") or "")]
    if dropped:
        notes.append("Herald's PUB/SUB has no backpressure: at " + ", ".join(dropped)
                     + " it dropped events at the fanout high-water mark (see summary.md).")
    draw(out_dir, "fanout", "Fanout, saturated: events delivered per second, all subscribers",
         [{"ylabel": unit, "clusters": FAN_CASES, "series": series, "scale": scale}], notes)
    rate = paced_rate(agg)
    if rate:
        series = []
        names = {"herald": "Herald", "nats": "NATS JetStream", "redis": "Redis Streams"}
        for p in ("p50", "p99"):
            for s, d, _ in fan:
                series.append((f"{names[s]} {p}",
                               series_of(agg, [(s, d, "fanout_paced", case)
                                               for case in FAN_CASES], p)))
        draw(out_dir, "fanout_latency",
             f"Fanout at a fixed {rate:,} events/s, the same offered load for every system:\n"
             "publish-to-deliver latency (ms, log scale)",
             [{"ylabel": "ms", "clusters": FAN_CASES, "series": series, "log": True,
               "ymin": 0.1}])
    series = [(label, series_of(agg, [(s, d, "catchup", "replay from the first event")]))
              for s, d, label in fan]
    series.append(("raw RocksDB iteration (limit)",
                   series_of(agg, [("raw", "-", "catchup", "RocksDB iteration")])))
    scale, unit = events_scale([v[0] for _, vs in series for v in vs if v])
    draw(out_dir, "catchup", "Catch-up: reading the whole log from its first event",
         [{"ylabel": unit, "clusters": ["catch-up of the log of 100 B events"],
           "series": series, "scale": scale}])
    sparse = [(k, g) for k, g in agg.items() if k[2] == "sparse"]
    system_names = {"raw": "raw", "herald": "Herald", "nats": "NATS", "redis": "Redis"}
    series = [(f"{system_names.get(k[0], k[0])}: {k[3]}", series_of(agg, [k])) for k, _ in sparse]
    draw(out_dir, "sparse", "Sparse read: one topic's 1,000 events among the log "
         "(ms, best of 3 reads; log scale)",
         [{"ylabel": "ms", "clusters": ["1,000 events of one topic"], "series": series,
           "log": True}],
         ["Redis \"stream per topic\": the application writes every event twice (the log and "
          "its topic's stream); \"scan of the log\": one stream alone."])
    draw(out_dir, "resources", "Resources of the log server (the log of 100 B events)",
         [{"title": "peak RSS (VmHWM) of the log server", "ylabel": "MiB",
           "clusters": ["peak RSS"],
           "series": [(label, series_of(agg, [(s, d, "resources", "peak RSS, log server")]))
                      for s, d, label in fan]},
          {"title": "disk per event, 2 s after the build", "ylabel": "bytes per event",
           "clusters": ["disk per 100 B event"],
           "series": [(label, series_of(agg, [(s, d, "resources", "disk per event")]))
                      for s, d, label in fan]}])


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

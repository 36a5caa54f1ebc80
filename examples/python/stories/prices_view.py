#!/usr/bin/python3
"""prices_view - a wrong price corrected by a compensating event (docs/projections.md)

The log is never edited: a price set by mistake (PriceSet 9.99 instead of
0.99) stays in it, and a PriceCorrected event, published after it, puts
things right.  The read model (a projection into SQLite) shows the price
in force and how many corrections it had; the audit trail -- who changed
what, when, and why -- is read from the log itself, by replay.

    prices_view.py                the price list (catch up, print, exit)
    prices_view.py --audit [SKU]  every price event of SKU (or all), from the
                                  log: seq, time, what, who, why
    prices_view.py --until TS     the price list as of an instant (Unix ns or
                                  ISO 8601), e.g. before the correction: a
                                  temporal projection, in a database of its own

Options: --api (default tcp://127.0.0.1:5580), --db (default
./var/stories/prices.db).  Usage errors exit 64.
"""

import argparse
import datetime
import os
import re
import sqlite3
import sys

import herald
from herald.projection import SQLiteProjection


def setup(db):
    db.execute("CREATE TABLE IF NOT EXISTS prices (sku TEXT PRIMARY KEY, "
               "cents INTEGER NOT NULL, set_by TEXT NOT NULL, seq INTEGER NOT NULL, "
               "corrections INTEGER NOT NULL DEFAULT 0)")


def reset(db):
    db.execute("DROP TABLE IF EXISTS prices")


def apply(db, event):
    change = event.json()
    if event.type == "PriceSet":
        db.execute("INSERT INTO prices (sku, cents, set_by, seq) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (sku) DO UPDATE SET cents = excluded.cents, "
                   "set_by = excluded.set_by, seq = excluded.seq",
                   (change["sku"], change["cents"], change["by"], event.seq))
    elif event.type == "PriceCorrected":
        #  The compensation: the price in force becomes the corrected one;
        #  the wrong one is not erased from anything but this table
        db.execute("INSERT INTO prices (sku, cents, set_by, seq, corrections) "
                   "VALUES (?, ?, ?, ?, 1) ON CONFLICT (sku) DO UPDATE SET "
                   "cents = excluded.cents, set_by = excluded.set_by, seq = excluded.seq, "
                   "corrections = corrections + 1",
                   (change["sku"], change["cents"], change["by"], event.seq))


def money(cents: int) -> str:
    return "%d.%02d" % (cents // 100, cents % 100)


def iso(ts: int) -> str:
    when = datetime.datetime.fromtimestamp(ts // 10 ** 9, datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % (ts % 10 ** 9)


def audit(agent: herald.Agent, sku: str) -> None:
    """The trail, from the log: every price event, oldest first."""
    prefix = "prices." + sku if sku else "prices."
    price_before = {}
    for event in agent.replay(prefixes=prefix):
        change = event.json()
        was = price_before.get(change["sku"])
        line = "seq %-4d %s  %-14s %-6s %7s  by %s" % (
            event.seq, iso(event.ts), event.type, change["sku"], money(change["cents"]),
            change["by"])
        if event.type == "PriceCorrected":
            line += ": %s (was %s)" % (change.get("reason", ""), money(was) if was is not None
                                       else "unset")
        print(line)
        price_before[change["sku"]] = change["cents"]


def show(path: str, status) -> None:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT sku, cents, set_by, seq, corrections FROM prices "
                            "ORDER BY sku").fetchall()
    finally:
        conn.close()
    when = "as of %s" % iso(status.until_ts) if status.until_ts else "now"
    print("prices %s (position: seq %d)" % (when, status.position))
    for sku, cents, by, seq, corrections in rows:
        print("  %-8s %7s   set by %s at seq %d%s" % (
            sku, money(cents), by, seq,
            "   (%d correction%s)" % (corrections, "s" if corrections > 1 else "")
            if corrections else ""))


def main(args: argparse.Namespace) -> int:
    with herald.Agent("prices-view", state_dir=None, api=args.api) as agent:
        if args.audit is not None:
            audit(agent, args.audit)
            return 0
        os.makedirs(os.path.dirname(os.path.abspath(args.db)), exist_ok=True)
        with SQLiteProjection(agent, "prices", args.db, prefixes="prices.", setup=setup,
                              reset=reset, apply=apply, until_ts=args.until) as projection:
            projection.start(timeout=10)
            show(args.db, projection.catch_up(timeout=60))
    return 0


class UsageParser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(64, "%s: %s\n" % (self.prog, message))


def instant(text: str) -> int:
    """An instant as Unix ns: ns as they are, or ISO 8601 (2026-12-05T23:59:59Z,
    an offset, or naive: UTC) with up to 9 decimals (the ns that shop.py and
    the audit print: a datetime would keep only microseconds)."""
    if text.isdigit():
        return int(text)
    match = re.fullmatch(r"([0-9-]+T[0-9:]+)(?:\.([0-9]{1,9}))?(Z|[+-][0-9:]+)?", text)
    try:
        if not match:
            raise ValueError(text)
        zone = match.group(3) or "+00:00"
        when = datetime.datetime.fromisoformat(match.group(1) + zone.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError("an instant: Unix ns or 2026-12-05T23:59:59Z, "
                                         "not %r" % text)
    return int(when.timestamp()) * 10 ** 9 + int((match.group(2) or "").ljust(9, "0"))


def parse_args() -> argparse.Namespace:
    parser = UsageParser(prog="prices_view.py", description="Prices as a read model; the "
                         "audit trail of their changes from the log.")
    parser.add_argument("--api", default="tcp://127.0.0.1:5580",
                        help="the broker (default: %(default)s)")
    parser.add_argument("--db", default="./var/stories/prices.db",
                        help="the SQLite file (default: %(default)s)")
    parser.add_argument("--audit", nargs="?", const="", default=None, metavar="SKU",
                        help="print the audit trail of SKU (all SKUs without one)")
    parser.add_argument("--until", type=instant, default=None,
                        help="the prices as of this instant (Unix ns or ISO 8601)")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    try:
        raise SystemExit(main(arguments))
    except herald.HeraldError as error:         # refused: say why, no traceback
        print("%s: %s" % ("prices_view.py", error), file=sys.stderr)
        raise SystemExit(1)

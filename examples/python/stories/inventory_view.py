#!/usr/bin/python3
"""inventory_view - the inventory as a read model in SQLite (docs/projections.md)

A projection of the stock.* events (StockReceived, StockSold: shop.py) into
one table, inventory(sku, on_hand, received, sold), in a SQLite file.  The
projection commits each batch's rows and its position in the log in one
transaction, so this program may be killed at any moment and started
again: nothing is counted twice or missed.

    inventory_view.py                 catch up with the log, print, exit
    inventory_view.py --follow        print, then each change, until Ctrl-C
    inventory_view.py --until TS      the inventory as of an instant (Unix ns
                                      as shop.py close-day prints it, or
                                      2026-12-05T23:59:59Z): a temporal
                                      projection, in a database of its own
    inventory_view.py --rebuild       drop the table, build it again from seq 1

Options: --api (default tcp://127.0.0.1:5580), --db (default
./var/stories/inventory.db).  The database is the only state: delete it
and the next run builds the same table again from the log.  Usage errors
exit 64.
"""

import argparse
import datetime
import os
import re
import signal
import sys
import threading

import herald
from herald.projection import SQLiteProjection


def setup(db):
    db.execute("CREATE TABLE IF NOT EXISTS inventory (sku TEXT PRIMARY KEY, "
               "on_hand INTEGER NOT NULL, received INTEGER NOT NULL, sold INTEGER NOT NULL)")


def reset(db):
    db.execute("DROP TABLE IF EXISTS inventory")


def apply(db, event):
    """One event, inside the batch's transaction: never commits itself."""
    if event.type not in ("StockReceived", "StockSold"):
        return                                  # not an inventory fact
    change = event.json()
    qty = int(change["qty"])
    received, sold = (qty, 0) if event.type == "StockReceived" else (0, qty)
    db.execute("INSERT INTO inventory (sku, on_hand, received, sold) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (sku) DO UPDATE SET on_hand = on_hand + excluded.on_hand, "
               "received = received + excluded.received, sold = sold + excluded.sold",
               (change["sku"], received - sold, received, sold))


def iso(ts: int) -> str:
    when = datetime.datetime.fromtimestamp(ts // 10 ** 9, datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % (ts % 10 ** 9)


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


def show(path: str, status) -> None:
    import sqlite3
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT sku, on_hand, received, sold FROM inventory "
                            "ORDER BY sku").fetchall()
    finally:
        conn.close()
    when = "as of %s" % iso(status.until_ts) if status.until_ts else "now"
    print("inventory %s (position: seq %d)" % (when, status.position))
    for sku, on_hand, received, sold in rows:
        print("  %-8s on hand %5d   received %5d   sold %5d" % (sku, on_hand, received, sold))
    if not rows:
        print("  (nothing yet)")
    sys.stdout.flush()


def main(args: argparse.Namespace) -> int:
    os.makedirs(os.path.dirname(os.path.abspath(args.db)), exist_ok=True)
    with herald.Agent("inventory-view", state_dir=None, api=args.api) as agent, \
            SQLiteProjection(agent, "inventory", args.db, prefixes="stock.", setup=setup,
                             reset=reset, apply=apply, until_ts=args.until) as projection:
        if args.rebuild:
            projection.rebuild()
            print("rebuilding %s from seq 1" % args.db)
        try:
            status = projection.start(timeout=10)   # temporal: returns when done
            status = projection.catch_up(timeout=60)
        except herald.DataLostError as lost:
            print("inventory_view.py: %s\n(run again with --rebuild)" % lost,
                  file=sys.stderr)
            return 1
        show(args.db, status)
        if not args.follow or args.until:
            return 0
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        shown = status.position
        while not stop.wait(0.2):
            status = projection.status()
            if status.state == "failed":
                print("inventory_view.py: %s" % status.message, file=sys.stderr)
                return 1
            if status.position != shown:
                shown = status.position
                show(args.db, status)
    return 0


class UsageParser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(64, "%s: %s\n" % (self.prog, message))


def parse_args() -> argparse.Namespace:
    parser = UsageParser(prog="inventory_view.py", description="The inventory (stock.*) "
                         "as a read model in SQLite, built by a projection.")
    parser.add_argument("--api", default="tcp://127.0.0.1:5580",
                        help="the broker (default: %(default)s)")
    parser.add_argument("--db", default="./var/stories/inventory.db",
                        help="the SQLite file (default: %(default)s)")
    parser.add_argument("--until", type=instant, default=None,
                        help="the inventory as of this instant (Unix ns or ISO 8601)")
    parser.add_argument("--follow", action="store_true",
                        help="keep following the log, printing each change")
    parser.add_argument("--rebuild", action="store_true",
                        help="drop the read model and build it again from seq 1")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    try:
        raise SystemExit(main(arguments))
    except herald.HeraldError as error:         # refused: say why, no traceback
        print("%s: %s" % ("inventory_view.py", error), file=sys.stderr)
        raise SystemExit(1)

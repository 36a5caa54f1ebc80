#!/usr/bin/python3
"""order_stock - an old and a new inventory service on one log (docs/projections.md)

The order service's OrderPlaced events gained a field: schema 1 was
{"sku", "qty"}; schema 2 adds "warehouse" (orders from before warehouses
came from "main").  Two inventory services read them side by side, each a
projection of orders.* into its own SQLite file, neither changing the log:

    order_stock.py --version 1   the old service: understands schema 1 only;
                                 a downcaster 2 -> 1 folds the warehouse away.
                                 Reserved stock per SKU.
    order_stock.py --version 2   the new service: wants schema 2; an upcaster
                                 1 -> 2 says "main" for the old events.
                                 Reserved stock per warehouse and SKU.

Each catches up, prints, and exits (--follow: and goes on).  Options: --api
(default tcp://127.0.0.1:5580), --db (default
./var/stories/order-stock-vN.db).  Usage errors exit 64.
"""

import argparse
import os
import signal
import sqlite3
import sys
import threading

import herald
from herald.projection import SQLiteProjection


# -- the old service: schema 1 ---------------------------------------------------

def setup_v1(db):
    db.execute("CREATE TABLE IF NOT EXISTS reserved (sku TEXT PRIMARY KEY, "
               "qty INTEGER NOT NULL, orders INTEGER NOT NULL)")


def apply_v1(db, event):
    order = event.json()
    assert set(order) == {"sku", "qty"}, order  # schema 1, whatever the log holds
    db.execute("INSERT INTO reserved VALUES (?, ?, 1) ON CONFLICT (sku) DO UPDATE SET "
               "qty = qty + excluded.qty, orders = orders + 1", (order["sku"], order["qty"]))


def order_placed_2_to_1(order):
    return {"sku": order["sku"], "qty": order["qty"]}


# -- the new service: schema 2 ---------------------------------------------------

def setup_v2(db):
    db.execute("CREATE TABLE IF NOT EXISTS reserved (warehouse TEXT NOT NULL, "
               "sku TEXT NOT NULL, qty INTEGER NOT NULL, orders INTEGER NOT NULL, "
               "PRIMARY KEY (warehouse, sku))")


def apply_v2(db, event):
    order = event.json()
    db.execute("INSERT INTO reserved VALUES (?, ?, ?, 1) ON CONFLICT (warehouse, sku) DO "
               "UPDATE SET qty = qty + excluded.qty, orders = orders + 1",
               (order["warehouse"], order["sku"], order["qty"]))


def order_placed_1_to_2(order):
    return dict(order, warehouse="main")


def reset(db):
    db.execute("DROP TABLE IF EXISTS reserved")


def show(path: str, version: int, status) -> None:
    conn = sqlite3.connect(path)
    try:
        if version == 1:
            rows = conn.execute("SELECT sku, qty, orders FROM reserved ORDER BY sku").fetchall()
        else:
            rows = conn.execute("SELECT warehouse || '/' || sku, qty, orders FROM reserved "
                                "ORDER BY warehouse, sku").fetchall()
    finally:
        conn.close()
    print("inventory v%d, reserved (position: seq %d)" % (version, status.position))
    for key, qty, orders in rows:
        print("  %-14s %4d in %d order%s" % (key, qty, orders, "" if orders == 1 else "s"))
    sys.stdout.flush()


def main(args: argparse.Namespace) -> int:
    path = args.db or "./var/stories/order-stock-v%d.db" % args.version
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with herald.Agent("inventory-v%d" % args.version, state_dir=None, api=args.api) as agent:
        if args.version == 1:
            agent.downcaster("OrderPlaced", 2, codec="json")(order_placed_2_to_1)
            setup, apply = setup_v1, apply_v1
        else:
            agent.upcaster("OrderPlaced", 1, codec="json")(order_placed_1_to_2)
            setup, apply = setup_v2, apply_v2
        with SQLiteProjection(agent, "reserved", path, prefixes="orders.", setup=setup,
                              reset=reset, apply=apply,
                              schemas={"OrderPlaced": args.version}) as projection:
            projection.start(timeout=10)
            status = projection.catch_up(timeout=60)
            show(path, args.version, status)
            if not args.follow:
                return 0
            stop = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
            shown = status.position
            while not stop.wait(0.2):
                status = projection.status()
                if status.state == "failed":
                    print("order_stock.py: %s" % status.message, file=sys.stderr)
                    return 1
                if status.position != shown:
                    shown = status.position
                    show(path, args.version, status)
    return 0


class UsageParser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(64, "%s: %s\n" % (self.prog, message))


def parse_args() -> argparse.Namespace:
    parser = UsageParser(prog="order_stock.py", description="Reserved stock from the "
                         "OrderPlaced events, as the old (schema 1) or the new (schema 2) "
                         "inventory service reads them.")
    parser.add_argument("--version", type=int, choices=(1, 2), required=True,
                        help="which service: 1 (old) or 2 (new)")
    parser.add_argument("--api", default="tcp://127.0.0.1:5580",
                        help="the broker (default: %(default)s)")
    parser.add_argument("--db", default=None,
                        help="the SQLite file (default: ./var/stories/order-stock-vN.db)")
    parser.add_argument("--follow", action="store_true",
                        help="keep following the log, printing each change")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    try:
        raise SystemExit(main(arguments))
    except herald.HeraldError as error:         # refused: say why, no traceback
        print("%s: %s" % ("order_stock.py", error), file=sys.stderr)
        raise SystemExit(1)

#!/usr/bin/python3
"""shop - the writing side of the projection stories (docs/projections.md)

Publishes the events the read models of this directory are built from:

    shop.py receive SKU QTY          StockReceived on stock.SKU
    shop.py sell SKU QTY             StockSold on stock.SKU
    shop.py close-day                DayClosed on days.: prints the day's end,
                                     the event's ts (the broker's clock)
    shop.py price SKU PRICE --by WHO PriceSet on prices.SKU (PRICE: 0.99)
    shop.py correct SKU PRICE --by WHO --reason WHY
                                     PriceCorrected on prices.SKU: the
                                     compensating event (the log keeps both)
    shop.py order ID SKU QTY [--warehouse W]
                                     OrderPlaced on orders.ID: schema 2 with a
                                     warehouse; --schema 1 (no warehouse) is what
                                     the order service published before

Each prints what it stored (seq).  Options: --api (default
tcp://127.0.0.1:5580).  No state directory: every command waits until the
broker has stored its event.  Usage errors exit 64.
"""

import argparse
import datetime
import sys

import herald


class UsageParser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(64, "%s: %s\n" % (self.prog, message))


def cents(text: str) -> int:
    """'0.99' -> 99 (prices are kept in cents: no float in a ledger)."""
    try:
        value = round(float(text) * 100)
    except ValueError:
        raise argparse.ArgumentTypeError("a price like 0.99, not %r" % text)
    if value < 0:
        raise argparse.ArgumentTypeError("a price is >= 0")
    return value


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number, not %r" % text)
    if value <= 0:
        raise argparse.ArgumentTypeError("a quantity is > 0")
    return value


def iso(ts: int) -> str:
    when = datetime.datetime.fromtimestamp(ts // 10 ** 9, datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % (ts % 10 ** 9)


def main(args: argparse.Namespace) -> int:
    with herald.Agent("shop", state_dir=None, api=args.api) as agent:
        if args.command in ("receive", "sell"):
            kind = "StockReceived" if args.command == "receive" else "StockSold"
            stored = agent.publish("stock." + args.sku, {"sku": args.sku, "qty": args.qty},
                                   type=kind)
            print("%s %d x %s: seq %d" % (kind, args.qty, args.sku, stored.seq))
        elif args.command == "close-day":
            stored = agent.publish("days.closed", {}, type="DayClosed")
            #  The day's end is this event's ts: the broker's ingest time, so
            #  every event stored before it has ts <= it and every later one >
            (event,) = agent.replay(from_seq=stored.seq, to_seq=stored.seq)
            print("day closed at %s: seq %d, until_ts %d" % (iso(event.ts), stored.seq,
                                                             event.ts))
        elif args.command == "price":
            stored = agent.publish("prices." + args.sku, {"sku": args.sku,
                                                          "cents": args.price,
                                                          "by": args.by}, type="PriceSet")
            print("PriceSet %s %d.%02d by %s: seq %d" % (args.sku, args.price // 100,
                                                         args.price % 100, args.by,
                                                         stored.seq))
        elif args.command == "correct":
            stored = agent.publish("prices." + args.sku,
                                   {"sku": args.sku, "cents": args.price, "by": args.by,
                                    "reason": args.reason}, type="PriceCorrected")
            print("PriceCorrected %s %d.%02d by %s: seq %d" % (
                args.sku, args.price // 100, args.price % 100, args.by, stored.seq))
        elif args.command == "order":
            order = {"sku": args.sku, "qty": args.qty}
            if args.schema == 2:
                order["warehouse"] = args.warehouse
            try:
                stored = agent.publish("orders." + args.id, order, type="OrderPlaced",
                                       schema=args.schema, expect=0)
            except herald.ConflictError:
                print("order %s exists already" % args.id)
                return 1
            print("OrderPlaced (schema %d) %s: %d x %s: seq %d"
                  % (args.schema, args.id, args.qty, args.sku, stored.seq))
    return 0


def parse_args() -> argparse.Namespace:
    parser = UsageParser(prog="shop.py", description="Publish the events of the projection "
                         "stories (docs/projections.md).")
    parser.add_argument("--api", default="tcp://127.0.0.1:5580",
                        help="the broker (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("receive", "sell"):
        command = commands.add_parser(name)
        command.add_argument("sku")
        command.add_argument("qty", type=positive)
    commands.add_parser("close-day")
    price = commands.add_parser("price")
    price.add_argument("sku")
    price.add_argument("price", type=cents)
    price.add_argument("--by", required=True)
    correct = commands.add_parser("correct")
    correct.add_argument("sku")
    correct.add_argument("price", type=cents)
    correct.add_argument("--by", required=True)
    correct.add_argument("--reason", required=True)
    order = commands.add_parser("order")
    order.add_argument("id")
    order.add_argument("sku")
    order.add_argument("qty", type=positive)
    order.add_argument("--schema", type=int, choices=(1, 2), default=2)
    order.add_argument("--warehouse", default="main")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    try:
        raise SystemExit(main(arguments))
    except herald.TimeoutError:
        #  No state directory: an event not acknowledged is not kept
        print("shop.py: no answer from a broker at %s: the event was not stored, or not "
              "confirmed" % arguments.api,
              file=sys.stderr)
        raise SystemExit(1)
    except herald.HeraldError as error:
        print("shop.py: %s" % error, file=sys.stderr)
        raise SystemExit(1)

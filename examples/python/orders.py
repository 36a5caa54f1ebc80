#!/usr/bin/python3
"""orders - the order service of the event-sourcing story, in Python

    orders.py place ID SKU QTY     publish OrderPlaced on orders.ID (a new order:
                                   expect=0, so an order id is used once)
    orders.py watch                react to the inventory: StockReserved ->
                                   OrderConfirmed, ReservationRejected ->
                                   OrderCancelled (the compensation), until Ctrl-C
    orders.py show ID              the order's history, read from its stream
    orders.py flush                send what an earlier run left in the outbox

Options: --api tcp://127.0.0.1:5580, --state DIR (the agent's state: its
outbox and checkpoints).  `watch` is a service running beside the commands,
so it has a directory of its own, ./var/py-orders-watch (an agent locks its
directory); place, show and flush share ./var/py-orders, so any of them
sends what an earlier one left in the outbox.  Usage errors exit 64.  The
same service as examples/orders.c (they interoperate: same topics, types and
JSON), on the herald package's synchronous Agent; `watch` uses the
iterator form.
"""

import argparse
import signal
import sys
import threading
import uuid

import herald


def reaction_id(cause: uuid.UUID) -> uuid.UUID:
    """Derived from the cause, so a reaction published twice is stored once."""
    raw = bytearray(cause.bytes)
    raw[15] ^= 0xA5
    return uuid.UUID(bytes=bytes(raw))


def place(agent: herald.Agent, order: str, sku: str, qty: int) -> int:
    try:
        published = agent.publish("orders." + order, {"sku": sku, "qty": qty},
                                  type="OrderPlaced", expect=0)
    except herald.ConflictError as conflict:
        print("order %s exists already (version %d)" % (order, conflict.actual))
        return 1
    except herald.TimeoutError:
        print("order %s queued: the broker is not answering; it is sent when it is back "
              "(run 'orders.py flush', or place another order)" % order)
        return 0
    print("order %s placed: seq %d" % (order, published.seq))
    return 0


class UsageParser(argparse.ArgumentParser):
    """Usage errors exit 64 (sysexits' EX_USAGE), as the C examples'."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(64, "%s: %s\n" % (self.prog, message))


def report_broker(agent: herald.Agent, api: str, stop: threading.Event) -> None:
    """Say on stderr when no broker answers, and when it answers again.

    The agent keeps trying by itself; a service that waits in silence for a
    broker that is not there would look hung.  At the start the broker gets
    2 s (two heartbeats) to be heard; later the agent's own rule holds
    (Stats.broker_reachable: no heartbeat for 3 s).
    """
    warned = False
    waited = 0.0
    while not stop.wait(0.1):
        waited += 0.1
        reachable = agent.stats().broker_reachable
        if not reachable and not warned and waited >= 2.0:
            print("orders.py: no broker answers at %s (is it running? ./run.sh starts one);"
                  " still trying" % api, file=sys.stderr, flush=True)
            warned = True
        elif reachable and warned:
            print("orders.py: the broker at %s answers" % api, file=sys.stderr, flush=True)
            warned = False


def watch(agent: herald.Agent, api: str) -> int:
    def interrupt(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    stop = threading.Event()
    threading.Thread(target=report_broker, args=(agent, api, stop), daemon=True).start()
    # The iterator hands over one event at a time; it is done (checkpointed)
    # when the loop asks for the next.  Ctrl-C while one is being handled
    # leaves it to be delivered again next time.
    try:
        with agent.events("inventory.", name="orders-reactions") as events:
            for event in events:
                react(agent, event)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
    return 0


def react(agent: herald.Agent, event: herald.Event) -> None:
    if event.type not in ("StockReserved", "ReservationRejected"):
        return
    reserved = event.type == "StockReserved"
    order = event.json().get("order", "?")
    try:
        agent.publish("orders." + order, b"", id=reaction_id(event.id),
                      type="OrderConfirmed" if reserved else "OrderCancelled",
                      meta={"causation_id": event.id.hex})
    except herald.TimeoutError:
        pass                                    # queued: it will be sent
    print("order %s: %s" % (order, "confirmed" if reserved else "cancelled (no stock)"),
          flush=True)


def show(agent: herald.Agent, order: str) -> int:
    print("order %s:" % order)
    for event in agent.read("orders." + order):
        print("  v%d  seq %-6d %-20s %s" % (event.ver, event.seq, event.type or "",
                                            event.data.decode("utf-8", "replace")))
    return 0


def main() -> int:
    parser = UsageParser(prog="orders.py", description="the order service",
                         usage="orders.py place ID SKU QTY | watch | show ID | flush "
                               "[--api ENDPOINT] [--state DIR]")
    parser.add_argument("command", choices=["place", "watch", "show", "flush"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--api", default="tcp://127.0.0.1:5580",
                        help="the broker (default: %(default)s)")
    parser.add_argument("--state", help="the agent's state directory (default: "
                        "./var/py-orders-watch for watch, ./var/py-orders for the others)")
    args = parser.parse_args()
    arity = {"place": 3, "watch": 0, "show": 1, "flush": 0}[args.command]
    if len(args.args) != arity:
        parser.error("%s takes %d argument(s)" % (args.command, arity))
    if args.command == "place" and not args.args[2].isdigit():
        parser.error("QTY must be a number: %s" % args.args[2])
    state = args.state or ("./var/py-orders-watch" if args.command == "watch"
                           else "./var/py-orders")
    with herald.Agent("orders", api=args.api, state_dir=state) as agent:
        if args.command == "place":
            rc = place(agent, args.args[0], args.args[1], int(args.args[2]))
        elif args.command == "watch":
            rc = watch(agent, args.api)
        elif args.command == "show":
            rc = show(agent, args.args[0])
        else:
            rc = 0
        # Whatever the command, leave nothing unsent if the broker answers
        try:
            agent.flush(2.0)
        except herald.TimeoutError:
            print("orders: %d event(s) wait in the outbox for the broker"
                  % agent.stats().outbox_depth)
        else:
            if args.command == "flush":
                # flush publishes nothing of its own: what was acknowledged
                # came from the outbox
                print("orders: the outbox is empty (%d event(s) sent now)"
                      % agent.stats().published)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

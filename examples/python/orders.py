#!/usr/bin/python3
"""orders - the order service of the event-sourcing story, in Python

    orders.py place ID SKU QTY     publish OrderPlaced on orders.ID (a new order:
                                   expect=0, so an order id is used once)
    orders.py watch                react to the inventory: StockReserved ->
                                   OrderConfirmed, ReservationRejected ->
                                   OrderCancelled (the compensation), until Ctrl-C
    orders.py show ID              the order's history, read from its stream
    orders.py flush                send what an earlier run left in the outbox

Options: --api tcp://127.0.0.1:5580, --state ./var/py-orders.  The same
service as examples/orders.c (they interoperate: same topics, types and
JSON), on the herald package's synchronous Agent; `watch` uses the
iterator form.
"""

import argparse
import signal
import sys
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
              "(run 'orders.py flush' or any orders.py command)" % order)
        return 0
    print("order %s placed: seq %d" % (order, published.seq))
    return 0


def watch(agent: herald.Agent) -> int:
    def interrupt(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    # The iterator hands over one event at a time; it is done (checkpointed)
    # when the loop asks for the next.  Ctrl-C while one is being handled
    # leaves it to be delivered again next time.
    try:
        with agent.events("inventory.", name="orders-reactions") as events:
            for event in events:
                react(agent, event)
    except KeyboardInterrupt:
        pass
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
    parser = argparse.ArgumentParser(description="the order service")
    parser.add_argument("command", choices=["place", "watch", "show", "flush"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--api", default="tcp://127.0.0.1:5580")
    parser.add_argument("--state", default="./var/py-orders")
    args = parser.parse_args()
    with herald.Agent("orders", api=args.api, state_dir=args.state) as agent:
        if args.command == "place" and len(args.args) == 3:
            rc = place(agent, args.args[0], args.args[1], int(args.args[2]))
        elif args.command == "watch":
            rc = watch(agent)
        elif args.command == "show" and len(args.args) == 1:
            rc = show(agent, args.args[0])
        elif args.command == "flush":
            rc = 0
        else:
            parser.print_usage(sys.stderr)
            return 2
        # Whatever the command, leave nothing unsent if the broker answers
        try:
            agent.flush(2.0)
        except herald.TimeoutError:
            print("orders: %d event(s) wait in the outbox for the broker"
                  % agent.stats().outbox_depth)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/python3
"""inventory - the inventory service of the event-sourcing story, on asyncio

Reacts to OrderPlaced events (topics "orders.<id>"): reserves the stock
when there is enough (StockReserved on "inventory.<sku>") or refuses
(ReservationRejected, the order service's cue to compensate).  Every SKU
starts with 10 units.  The same service as examples/inventory.c, on the
herald package's AsyncAgent: the handler is a coroutine on the event loop,
which the C agent drives through a file descriptor.

Its state (stock per SKU and the seq of the last event applied) is a
snapshot saved after every event, so a restart loads it and goes on; the
subscription's checkpoint does the rest:
  - an event redelivered after a crash whose seq the snapshot already
    holds is skipped: it was applied;
  - a reaction's id is derived from the order's event id, so a reaction
    published twice (a crash after publishing, before the snapshot) is
    stored once: the broker deduplicates by id.

    inventory.py [--api tcp://127.0.0.1:5580] [--state ./var/py-inventory]
"""

import argparse
import asyncio
import json
import signal
import sys
import uuid

import herald

START_STOCK = 10


def reaction_id(cause: uuid.UUID) -> uuid.UUID:
    """The order's id with its last byte changed (as examples/inventory.c)."""
    raw = bytearray(cause.bytes)
    raw[15] ^= 0x5A
    return uuid.UUID(bytes=bytes(raw))


class UsageParser(argparse.ArgumentParser):
    """Usage errors exit 64 (sysexits' EX_USAGE), as the C examples'."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(64, "%s: %s\n" % (self.prog, message))


async def report_broker(agent: herald.AsyncAgent, api: str) -> None:
    """Say on stderr when no broker answers, and when it answers again.

    The agent keeps trying by itself; a service that waits in silence for a
    broker that is not there would look hung.  At the start the broker gets
    2 s (two heartbeats) to be heard; later the agent's own rule holds
    (Stats.broker_reachable: no heartbeat for 3 s).
    """
    warned = False
    waited = 0.0
    while True:
        await asyncio.sleep(0.1)
        waited += 0.1
        reachable = agent.stats().broker_reachable
        if not reachable and not warned and waited >= 2.0:
            print("inventory.py: no broker answers at %s (is it running? ./run.sh starts"
                  " one); still trying" % api, file=sys.stderr, flush=True)
            warned = True
        elif reachable and warned:
            print("inventory.py: the broker at %s answers" % api, file=sys.stderr, flush=True)
            warned = False


async def main(args: argparse.Namespace) -> int:

    async with herald.AsyncAgent("inventory", api=args.api, state_dir=args.state) as agent:
        snapshot = await agent.load_snapshot("inventory")
        state = json.loads(snapshot.data) if snapshot else {"seq": 0, "stock": {}}
        if snapshot:
            print("inventory: state as of seq %d" % state["seq"])

        @agent.subscribe("orders.", name="inventory-orders", start=state["seq"] + 1)
        async def on_order(event: herald.Event) -> None:
            if event.seq <= state["seq"]:
                return                          # redelivered, and already applied
            if event.type == "OrderPlaced":
                order = event.topic[len("orders."):]
                placed = event.json()
                sku, qty = placed.get("sku"), int(placed.get("qty", 0))
                stock = state["stock"].setdefault(sku, START_STOCK) if sku else None
                reserved = stock is not None and qty > 0 and stock >= qty
                if reserved:
                    state["stock"][sku] = stock = stock - qty
                reply = {"order": order, "sku": sku or "?", "qty": qty, "left": stock or 0}
                try:
                    await agent.publish("inventory.%s" % (sku or "unknown"), reply,
                                        type="StockReserved" if reserved
                                        else "ReservationRejected",
                                        meta={"causation_id": event.id.hex},
                                        id=reaction_id(event.id))
                except herald.TimeoutError:
                    pass                        # queued in the outbox: it will be sent
                print("seq %d: order %s, %d x %s: %s (%d left)%s"
                      % (event.seq, order, qty, sku, "reserved" if reserved else "REJECTED",
                         stock or 0, " [redelivered]" if event.redelivered else ""),
                      flush=True)
            state["seq"] = event.seq
            await agent.save_snapshot("inventory", json.dumps(state), event.seq)

        print("inventory: reserving stock for orders (Ctrl-C to stop)", flush=True)
        reporter = asyncio.ensure_future(report_broker(agent, args.api))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        reporter.cancel()
        stats = agent.stats()
        print("inventory: %d events handled, lag %d" % (stats.delivered, stats.lag))
    return 0


def parse_args() -> argparse.Namespace:
    parser = UsageParser(prog="inventory.py", description="Reserve stock for the orders "
                         "placed on orders.<id> (every SKU starts with 10) and publish "
                         "StockReserved or ReservationRejected on inventory.<sku>, until "
                         "Ctrl-C.")
    parser.add_argument("--api", default="tcp://127.0.0.1:5580",
                        help="the broker (default: %(default)s)")
    parser.add_argument("--state", default="./var/py-inventory",
                        help="the agent's state directory (default: %(default)s)")
    return parser.parse_args()


if __name__ == "__main__":
    # Arguments first, outside the event loop: --help and usage errors touch
    # nothing (no agent, no state directory)
    raise SystemExit(asyncio.run(main(parse_args())))

"""Consumer groups conformance: a third-party member written from
docs/protocol.md "Consumer groups" alone (raw ZeroMQ + MessagePack)

The member joins a group with a heartbeat, gets partitions, reads the
events of its partitions with REPLAY (partition = fnv1a32(topic) mod
partitions), declares each batch (commit delivered = D) before it handles
it and records it after, and leaves; a second member then joins and gets
every partition at the recorded positions.  Each test starts its own
heraldd (conftest.py); every receive is bounded.
"""

import os

import msgpack
import pytest


def fnv1a32(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) % (1 << 32)
    return h


def test_fnv1a32_examples_of_the_doc():
    assert fnv1a32(b"orders.1") == 0xa72831f5
    assert fnv1a32(b"orders.1") % 32 == 21
    assert fnv1a32(b"orders.1234") == 0x78d87a42
    assert fnv1a32(b"orders.1234") % 32 == 2


def group(client, rid, op, **keys):
    body = {"rid": rid, "op": op}
    body.update(keys)
    reply = client.request("GROUP", body)
    payload = msgpack.unpackb(reply.body, raw=False)
    assert reply.command == "GROUP", "GROUP %s: got %s %r" % (op, reply.command, payload)
    assert payload["rid"] == rid and payload["op"] == op, payload
    return payload


def replay_all(client, rid, start, prefixes):
    """Every event from seq start on, as decoded envelopes."""
    client.send("REPLAY", {"rid": rid, "from": start, "prefixes": prefixes, "credit": 10000})
    events = []
    while True:
        reply = client.recv()
        if reply.command == "END":
            return events
        assert reply.command == "EVENTS", reply
        events.extend(msgpack.unpackb(frame, raw=False) for frame in reply.frames[2:])


def test_a_member_from_the_doc_joins_handles_commits_and_leaves(broker):
    publisher = broker.client()
    topics = ["orders.%d" % n for n in range(40)]
    events = [{"id": os.urandom(16), "topic": t, "data": b"x"} for t in topics]
    reply = publisher.request("PUBLISH", {"rid": 1, "events": events})
    assert reply.command == "ACK"

    member = broker.client()
    name = "billing-h1-%d-%s" % (os.getpid(), os.urandom(4).hex())
    joined = group(member, 10, "heartbeat", group="billing", member=name,
                   prefixes=["orders."], owned=[])
    assert joined["partitions"] == 32
    assert joined["session_ms"] == 3000 and joined["heartbeat_ms"] == 500
    assert joined["head"] == 40
    assigned = {a["partition"]: a for a in joined["assigned"]}
    assert sorted(assigned) == list(range(32)), "a lone member gets every partition"

    # Read from the lowest committed + 1; handle only what is ours
    start = min(a["committed"] for a in assigned.values()) + 1
    got = replay_all(member, 11, start, ["orders."])
    assert [e["seq"] for e in got] == list(range(1, 41))
    mine = [e for e in got if fnv1a32(e["topic"].encode()) % 32 in assigned]
    assert len(mine) == 40

    # Declare, then hand over: delivered = D first, then committed = D
    last = mine[-1]["seq"]
    owned = [[p, a["epoch"]] for p, a in sorted(assigned.items())]
    declare = group(member, 12, "commit", group="billing", member=name,
                    positions=[[p, e, 0, last] for p, e in owned])
    assert declare["fenced"] == []
    done = group(member, 13, "commit", group="billing", member=name,
                 positions=[[p, e, last, last] for p, e in owned])
    assert done["fenced"] == []

    beat = group(member, 14, "heartbeat", group="billing", member=name,
                 prefixes=["orders."], owned=owned)
    assert sorted(a["partition"] for a in beat["assigned"]) == list(range(32))
    assert all(a["committed"] == last and a["delivered"] == last for a in beat["assigned"])

    listed = group(member, 15, "list")
    billing = [g for g in listed["groups"] if g["group"] == "billing"][0]
    assert billing["members"] == 1 and billing["committed"] == 40 and billing["lag"] == 0

    shown = group(member, 16, "show", group="billing")
    assert shown["members"][0]["member"] == name
    assert all(p["owner"] == name for p in shown["positions"])

    left = group(member, 17, "leave", group="billing", member=name)
    assert left["member"] == name

    # The partitions are free at once: another member gets them all,
    # starting after what was committed
    other = broker.client()
    beat = group(other, 20, "heartbeat", group="billing", member="billing-h2",
                 prefixes=["orders."])
    assert len(beat["assigned"]) == 32
    assert all(a["committed"] == 40 for a in beat["assigned"])
    assert all(a["epoch"] > dict(owned)[a["partition"]] for a in beat["assigned"])


def test_a_broker_without_the_rid_answers_rid_nil(broker):
    c = broker.client()
    reply = c.request("GROUP", {"op": "list"})
    assert reply.command == "ERROR"
    body = msgpack.unpackb(reply.body, raw=False)
    assert body["rid"] is None and body["code"] == "bad_request"

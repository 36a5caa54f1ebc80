"""test_schemas - upcasters, downcasters and on_incompatible through the binding

On a real heraldd: Python casters (bytes, and json codec) upcast and
downcast on the way to the handler, the log keeps the stored schema
(event.stored_schema), a caster that raises meets the subscription's
policy (stop, skip, park), parked events are listed and replayed, an
AsyncAgent converts too, and the worked example of docs/schemas.md runs
as printed: an old and a new inventory service side by side.
"""

import asyncio
import pathlib
import re

import pytest

import herald
from conftest import wait_for

DOCS = pathlib.Path(__file__).resolve().parents[3] / "docs" / "schemas.md"


def publish_orders(agent):
    seqs = [agent.publish("orders.1", {"sku": "a", "qty": 1}, type="OrderPlaced").seq,
            agent.publish("orders.2", {"sku": "b", "qty": 2, "wh": "east"},
                          type="OrderPlaced", schema=2).seq,
            agent.publish("orders.3", b"plain").seq]
    return seqs


def test_upcast_and_stored_schema(make_agent):
    agent = make_agent()
    seqs = publish_orders(agent)

    @agent.upcaster("OrderPlaced", 1, codec="json")
    def one_to_two(order):
        return dict(order, wh="main")

    seen = []

    @agent.subscribe("orders.", schemas={"OrderPlaced": 2})
    def inventory(event):
        seen.append((event.seq, event.schema, event.stored_schema, event.data))

    wait_for(lambda: len(seen) == 3)
    assert seen[0][:3] == (seqs[0], 2, 1)
    assert seen[0][3] == b'{"sku":"a","qty":1,"wh":"main"}'
    assert seen[1][:3] == (seqs[1], 2, 2)
    assert seen[2] == (seqs[2], 1, 1, b"plain")
    assert agent.schema_stats("inventory") == (1, 0, 0, 0, 0)
    # The log is not rewritten
    assert agent.replay()[0].schema == 1


def test_downcast_bytes_caster(make_agent):
    agent = make_agent()
    publish_orders(agent)

    @agent.downcaster("OrderPlaced", 2)
    def two_to_one(data):
        assert isinstance(data, bytes)
        return data.replace(b',"wh":"east"', b"")

    seen = []
    agent.subscribe("orders.", lambda e: seen.append(e.json() if e.type else e.data),
                    name="old", schemas={"OrderPlaced": 1})
    wait_for(lambda: len(seen) == 3)
    assert seen[1] == {"sku": "b", "qty": 2}
    assert agent.schema_stats().downcast == 1


def test_rules_refused(make_agent):
    agent = make_agent()

    @agent.upcaster("OrderPlaced", 1)
    def up(data):
        return data

    with pytest.raises(herald.InvalidArgumentError, match="registered already"):
        agent.upcaster("OrderPlaced", 1)(up)
    with pytest.raises(herald.InvalidArgumentError):
        agent.downcaster("OrderPlaced", 1)(up)
    with pytest.raises(ValueError, match="on_incompatible"):
        agent.subscribe("orders.", lambda e: None, on_incompatible="ignore")
    with pytest.raises(ValueError, match="schemas"):
        agent.subscribe("orders.", lambda e: None, schemas={"OrderPlaced": 0})
    with pytest.raises(ValueError, match="codec"):
        agent.upcaster("X", 1, codec="xml")
    with pytest.raises(herald.NotFoundError):
        agent.schema_stats("nope")
    # batch=True with schemas= is no longer refused: test_position.py


def test_stop_names_type_schemas_and_seq(make_agent):
    errors = []
    agent = make_agent(on_error=lambda name, exc: errors.append(exc))
    seqs = publish_orders(agent)
    seen = []
    sub = agent.subscribe("orders.", lambda e: seen.append(e.seq), name="old",
                          schemas={"OrderPlaced": 1}, on_incompatible="stop")
    wait_for(lambda: sub.status().state == "failed")
    status = sub.status()
    assert seen == [seqs[0]]
    assert status.delivered_seq == seqs[0]
    assert ("event seq %d of type OrderPlaced is stored at schema 2, the handler wants 1: "
            "no downcaster 2 -> 1" % seqs[1]) in status.message
    wait_for(lambda: errors)
    assert isinstance(errors[0], herald.UnsupportedError)
    assert agent.schema_stats("old").stopped == 1


def test_raising_upcaster_is_skipped_and_reported(make_agent):
    errors = []
    agent = make_agent(on_error=lambda name, exc: errors.append(exc))
    seqs = publish_orders(agent)

    @agent.upcaster("OrderPlaced", 1, codec="json")
    def broken(order):
        raise KeyError("warehouse")

    seen = []
    sub = agent.subscribe("orders.", lambda e: seen.append(e.seq), name="new",
                          schemas={"OrderPlaced": 2}, on_incompatible="skip")
    wait_for(lambda: len(seen) == 2)
    wait_for(lambda: sub.status().delivered_seq == seqs[2])
    assert seen == seqs[1:]
    assert len(errors) == 1
    assert isinstance(errors[0], herald.UnsupportedError)
    assert "skipped" in str(errors[0]) and "KeyError" in str(errors[0])
    assert "seq %d" % seqs[0] in str(errors[0])
    assert sub.status().state == "live"
    assert agent.schema_stats("new").skipped == 1


def test_not_bytes_is_a_failed_conversion(make_agent):
    agent = make_agent()
    publish_orders(agent)

    @agent.upcaster("OrderPlaced", 1)
    def wrong(data):
        return 42

    sub = agent.subscribe("orders.", lambda e: None, name="new",
                          schemas={"OrderPlaced": 2})
    wait_for(lambda: sub.status().state == "failed")
    assert "TypeError" in sub.status().message


def test_park_then_replay(make_agent, state_dir):
    agent = make_agent()
    seqs = publish_orders(agent)
    parked_now, seen = [], []
    # A gap: 2 -> 3 only; schema 1 events are parked
    agent.upcaster("OrderPlaced", 2, codec="json")(lambda o: dict(o, prio=0))
    agent.subscribe("orders.", lambda e: seen.append(e.seq), name="v3",
                    schemas={"OrderPlaced": 3}, on_incompatible="park",
                    on_parked=lambda event, reason: parked_now.append((event.seq, reason)))
    wait_for(lambda: len(seen) == 2)
    assert seen == seqs[1:]
    assert parked_now and parked_now[0][0] == seqs[0]
    assert "no upcaster 1 -> 2" in parked_now[0][1]
    listed = agent.parked("v3")
    assert [p.event.seq for p in listed] == [seqs[0]]
    assert listed[0].event.schema == 1                 # as stored
    # Still a gap: stays parked
    with pytest.raises(herald.UnsupportedError):
        agent.replay_parked("v3", lambda e: None)
    assert len(agent.parked("v3")) == 1
    # Filled: replayed converted, and gone from the file
    agent.upcaster("OrderPlaced", 1, codec="json")(lambda o: dict(o, wh="main"))
    replayed = []
    assert agent.replay_parked("v3", lambda e: replayed.append(e.json())) == 1
    assert replayed == [{"sku": "a", "qty": 1, "wh": "main", "prio": 0}]
    assert agent.parked("v3") == []
    assert agent.schema_stats("v3").parked == 1


def test_async_agent_converts(broker, state_dir):
    async def main():
        async with herald.AsyncAgent("a", state_dir=state_dir, api=broker.api,
                                     fanout=broker.fanout, heartbeat=0.2) as agent:
            await agent.publish("orders.1", {"sku": "a", "qty": 1}, type="OrderPlaced")

            @agent.upcaster("OrderPlaced", 1, codec="json")
            def up(order):
                return dict(order, wh="main")

            seen = []

            @agent.subscribe("orders.", schemas={"OrderPlaced": 2})
            async def inventory(event):
                seen.append((event.schema, event.stored_schema, event.json()))

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not seen and loop.time() < deadline:
                await asyncio.sleep(0.01)
            assert seen == [(2, 1, {"sku": "a", "qty": 1, "wh": "main"})]
            assert agent.schema_stats().upcast == 1
    asyncio.run(asyncio.wait_for(main(), 30))


def test_worked_example_of_the_docs(broker, tmp_path):
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/schemas.md has one worked example"
    scope = {"API": broker.api, "FANOUT": broker.fanout, "STATE": str(tmp_path),
             "wait_until": lambda predicate: wait_for(predicate, what="the example")}
    exec(compile(blocks[0], str(DOCS), "exec"), scope)


def test_group_subscription_converts(make_agent):
    agent = make_agent()
    publish_orders(agent)

    @agent.upcaster("OrderPlaced", 1, codec="json")
    def up(order):
        return dict(order, wh="main")

    seen = []
    agent.subscribe("orders.", lambda e: seen.append((e.schema, e.stored_schema, e.data)),
                    group="inventory", partitions=1, schemas={"OrderPlaced": 2})
    wait_for(lambda: len(seen) == 3)
    assert seen[0] == (2, 1, b'{"sku":"a","qty":1,"wh":"main"}')
    assert agent.schema_stats("inventory").upcast == 1

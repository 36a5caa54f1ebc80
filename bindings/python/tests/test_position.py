"""test_position - subscribe(..., caller_position=True): the caller keeps the position

Against a real heraldd (issue 16, what herald.projection stands on): an agent
with no state_dir subscribes from the seq it is given, per event and with a
batch handler; nothing of such a subscription reaches the agent's state_dir;
``start`` applies on every subscribe; a batch handler with ``schemas=`` gets
converted events (with and without the msgpack fast path), incompatible ones
left out; a broker that lost events the subscription had passed stops it with
DataLostError instead of rewinding it; AsyncAgent; what is refused.  Nothing
asserts timings.
"""
import asyncio
import hashlib
import os
import subprocess

import pytest

import herald
from conftest import BUILDDIR, wait_for


def publish(agent, prefix, count, topics=1):
    for i in range(count):
        agent.publish_async("%s%d" % (prefix, i % topics), b"%d" % i)
    agent.flush(30)


def tree(path):
    """Every file under path: relative name -> sha256 of its content."""
    found = {}
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.mark.parametrize("batch", [False, True])
def test_an_agent_without_state_dir_projects_from_a_given_seq(make_agent, batch):
    agent = make_agent(state_dir=None)
    publish(agent, "p.", 50, topics=3)
    seen, calls = [], []

    def handle(event_or_events):
        calls.append(1)
        if batch:
            seen.extend(event_or_events)
        else:
            seen.append(event_or_events)
    agent.subscribe("p.", handle, name="view", start=21, batch=batch, caller_position=True)
    wait_for(lambda: len(seen) >= 30, what=lambda: "30 events, got %d" % len(seen))
    wait_for(lambda: agent.subscription("view").delivered_seq == 50)
    assert [e.seq for e in seen] == list(range(21, 51))
    if batch:
        assert len(calls) < 30
    status = agent.subscription("view")
    assert status.delivered == 30 and status.duplicates == 0
    publish(agent, "p.", 5)
    wait_for(lambda: len(seen) == 35)
    assert [e.seq for e in seen] == list(range(21, 56))
    # a subscription the agent keeps needs the state_dir it has not got
    with pytest.raises(herald.InvalidArgumentError):
        agent.subscribe("p.", seen.append, name="plain")


def test_nothing_of_it_is_written_in_the_state_dir(make_agent, state_dir):
    publisher = make_agent("pub", state_dir=None)
    agent = make_agent()
    before = tree(state_dir)
    publish(publisher, "n.", 100, topics=4)
    one, many, converted = [], [], []
    for _round in range(2):
        agent.subscribe("n.", one.append, name="one", start=1, caller_position=True)
        agent.subscribe("n.", many.extend, name="many", start=1, batch=True,
                        caller_position=True)
        agent.subscribe("n.", converted.extend, name="converted", start=1, batch=True,
                        caller_position=True, schemas={"Anything": 3},
                        on_incompatible="park", on_parked=lambda event, reason: None)
        for name in ("one", "many", "converted"):
            wait_for(lambda: agent.subscription(name).delivered_seq == 100)
            agent.unsubscribe(name)
    assert len(one) == len(many) == len(converted) == 200
    agent.close()
    assert tree(state_dir) == before


def test_start_applies_on_every_subscribe(make_agent, state_dir):
    publisher = make_agent("pub", state_dir=None)
    publish(publisher, "s.", 40)
    agent = make_agent()
    seen = []
    agent.subscribe("s.", seen.append, name="view", start=11, caller_position=True)
    wait_for(lambda: len(seen) == 30)
    wait_for(lambda: agent.subscription("view").delivered_seq == 40)
    agent.unsubscribe("view")
    # lower than it was: the events come again (not even the dedup window was kept)
    agent.subscribe("s.", seen.extend, name="view", start=5, batch=True, caller_position=True)
    wait_for(lambda: len(seen) == 66)
    assert [e.seq for e in seen] == list(range(11, 41)) + list(range(5, 41))
    agent.close()
    # another agent on the same state_dir, in turn
    again = make_agent()
    later = []
    again.subscribe("s.", later.append, name="view", start=39, caller_position=True)
    wait_for(lambda: len(later) == 2)
    assert [e.seq for e in later] == [39, 40]


@pytest.fixture(params=["msgpack", "views"])
def decoding(request, monkeypatch):
    """The batch's events decoded from its envelopes (msgpack) or read
    field by field from its views (no msgpack)."""
    if request.param == "views":
        import herald.event
        monkeypatch.setattr(herald.event, "_msgpack", None)
    return request.param


@pytest.mark.parametrize("caller_position", [True, False])
def test_a_batch_handler_with_schemas_gets_converted_events(make_agent, decoding,
                                                            caller_position):
    agent = make_agent(on_error=lambda name, exc: errors.append((name, exc)))
    errors = []

    @agent.upcaster("OrderPlaced", 1)
    def to_2(data):
        return data + b";wh=main"

    agent.publish("o.1", b"a", type="OrderPlaced")
    agent.publish("o.1", b"b;wh=x", type="OrderPlaced", schema=2)
    agent.publish("o.1", b"c;wh=y;prio=1", type="OrderPlaced", schema=3)   # no downcaster
    agent.publish("o.1", b"d")
    agent.publish("o.1", b"e", type="OrderPlaced")
    batches = []
    agent.subscribe("o.", batches.append, name="orders", batch=True,
                    schemas={"OrderPlaced": 2}, on_incompatible="skip",
                    caller_position=caller_position)
    wait_for(lambda: agent.subscription("orders").delivered_seq == 5)
    events = [e for b in batches for e in b]
    assert [(e.seq, e.schema, e.stored_schema, e.data) for e in events] == [
        (1, 2, 1, b"a;wh=main"), (2, 2, 2, b"b;wh=x"), (4, 1, 1, b"d"),
        (5, 2, 1, b"e;wh=main")]
    assert len(batches) == 2                    # one run before seq 3, one after
    assert agent.schema_stats("orders").skipped == 1
    assert len(errors) == 1 and errors[0][0] == "orders"
    assert "skipped" in str(errors[0][1])


def test_a_batch_handler_with_a_default_schema(make_agent, decoding):
    agent = make_agent(state_dir=None)

    @agent.upcaster("Any", 1)
    def to_2(data):
        return data.upper()

    agent.publish("d.1", b"a", type="Any")
    agent.publish("d.1", b"b")
    agent.publish("d.1", b"c", type="Any", schema=2)
    batches = []
    agent.subscribe("d.", batches.append, name="d", batch=True, start=1,
                    default_schema=2, caller_position=True)
    wait_for(lambda: agent.subscription("d").delivered_seq == 3)
    assert [(e.seq, e.schema, e.stored_schema, e.data) for b in batches for e in b] == [
        (1, 2, 1, b"A"), (2, 1, 1, b"b"), (3, 2, 2, b"c")]


def test_a_broker_loss_stops_it_with_data_lost_error(make_agent, broker):
    errors = []
    agent = make_agent(on_error=lambda name, exc: errors.append((name, exc)))
    events, batches = [], []
    agent.subscribe("l.", events.append, name="events", start=1, caller_position=True)
    agent.subscribe("l.", batches.extend, name="batches", start=1, batch=True,
                    caller_position=True)
    witness = []
    agent.subscribe("l.", witness.append, name="witness")
    publisher = make_agent("pub", state_dir=None)
    publish(publisher, "l.", 200, topics=5)
    wait_for(lambda: len(events) == 200 and len(batches) == 200 and len(witness) == 200)
    # the broker loses its write-ahead log; the operator accepts the loss
    broker.kill()
    for name in os.listdir(broker.data_dir):
        if name.endswith(".log"):
            os.unlink(os.path.join(broker.data_dir, name))
    repair = subprocess.run([str(BUILDDIR / "tools" / "herald"), "repair", "--data-dir",
                             broker.data_dir, "--accept-loss"], capture_output=True,
                            timeout=60)
    assert repair.returncode == 0, repair.stderr
    broker.start()
    publish(publisher, "l.", 300, topics=5)
    wait_for(lambda: len(witness) == 500, what=lambda: "500, got %d" % len(witness))
    for name in ("events", "batches"):
        wait_for(lambda: agent.subscription(name).state == "failed")
        status = agent.subscription(name)
        assert status.delivered_seq == 200, "%s was rewound" % name
        assert status.error == herald.DataLostError.code and status.data_lost == 1
    assert len(events) == 200 and len(batches) == 200
    # the state is FAILED before on_error is called
    wait_for(lambda: {"events", "batches", "witness"} <= {name for name, _ in errors})
    told = {name: exc for name, exc in errors}
    assert isinstance(told["events"], herald.DataLostError)
    assert isinstance(told["batches"], herald.DataLostError)
    assert "not rewound" in str(told["events"])
    assert isinstance(told["witness"], herald.DataLostError)   # rewound, and going on
    assert agent.subscription("witness").state in ("live", "catching_up")


def test_async_agent(broker):
    async def main():
        async with herald.AsyncAgent("aio", api=broker.api, fanout=broker.fanout,
                                     state_dir=None, heartbeat=0.2) as agent:
            for i in range(100):
                agent.publish("a.%d" % (i % 3), b"x")
            await agent.flush(30)
            seen = []

            async def handle(events):
                await asyncio.sleep(0)
                seen.extend(events)
            agent.subscribe("a.", handle, name="view", start=61, batch=True,
                            caller_position=True)
            for _ in range(2000):
                if len(seen) >= 40:
                    break
                await asyncio.sleep(0.01)
            assert [e.seq for e in seen] == list(range(61, 101))

            # dispatch mode, with schemas: converted, the incompatible one skipped
            @agent.upcaster("T", 1)
            def up(data):
                return data + b"+"
            agent.publish("t.1", b"a", type="T")
            agent.publish("t.1", b"b", type="T", schema=3)
            agent.publish("t.1", b"c", type="T")
            await agent.flush(30)
            converted = []

            async def convert(events):
                converted.extend(events)
            agent.subscribe("t.", convert, name="typed", start=101, batch=True,
                            caller_position=True, schemas={"T": 2}, on_incompatible="skip")
            for _ in range(2000):
                if agent.subscription("typed").delivered_seq == 103:
                    break
                await asyncio.sleep(0.01)
            assert [(e.seq, e.schema, e.stored_schema, e.data) for e in converted] == [
                (101, 2, 1, b"a+"), (103, 2, 1, b"c+")]
            assert agent.schema_stats("typed").skipped == 1
    asyncio.run(main())


def test_what_is_refused(make_agent, state_dir):
    agent = make_agent()
    before = tree(state_dir)
    with pytest.raises(herald.InvalidArgumentError, match="caller_position"):
        agent.subscribe("x.", lambda e: None, group="g", caller_position=True)
    with pytest.raises(herald.InvalidArgumentError, match="on_parked"):
        agent.subscribe("x.", lambda e: None, name="p", schemas={"T": 2},
                        on_incompatible="park", caller_position=True)
    with pytest.raises(herald.InvalidArgumentError):
        agent.subscribe("x.", lambda e: None, name=".bad", caller_position=True)
    with pytest.raises(herald.HeraldError):
        agent.subscription("p")
    agent.close()
    assert tree(state_dir) == before

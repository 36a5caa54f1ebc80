"""A real heraldd whose live log was trimmed (docs/operations.md, "Trimming
and retention"): TrimmedError through every path.

A subscription whose catch-up needs trimmed events stops (status failed,
nothing delivered past the trim point) and on_error receives a
TrimmedError whose ``first`` is the first seq still there; the events()
iterator raises it; subscribing from ``first`` then delivers the rest, in
order; read() and replay() of a trimmed range raise it; a publish retrying
a trimmed id is a duplicate with its original seq.  Trims are TRIM
{unarchived: true} on a raw DEALER (herald trim's archive proof is tested
in tests/test_herald_trim.sh).
"""

import threading
import uuid

import msgpack
import pytest
import zmq

import herald

from conftest import wait_for


def trim(broker, prefix, until):
    """TRIM {prefix, until, unarchived}; the reply's first."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(broker.api)
    try:
        sock.send_multipart([b"TRIM", msgpack.packb(
            {"rid": 9, "prefix": prefix, "until": until, "unarchived": True})])
        assert sock.poll(20000, zmq.POLLIN), "no answer to TRIM"
        command, body = sock.recv_multipart()[:2]
        reply = msgpack.unpackb(body, raw=False)
        assert command == b"TRIM", reply
        return reply["first"]
    finally:
        sock.close(0)


def publish(agent, count, topic="t.1"):
    return [agent.publish(topic, b"e%d" % index) for index in range(count)]


def test_trimmed_error_is_the_code_10_and_carries_first():
    assert herald.error_class(10) is herald.TrimmedError
    assert issubclass(herald.TrimmedError, herald.HeraldError)
    exc = herald.TrimmedError("trimmed: subscription s needs seq 1 on, but the live log was "
                              "trimmed (herald trim): the first seq still there for its "
                              "prefixes is 201. Stopped")
    assert exc.first == 201 and exc.code == 10 and exc.name == "trimmed"
    assert herald.TrimmedError("trimmed: … (first 41: ask again from there …)").first == 41
    assert herald.TrimmedError("no number here").first is None


def test_a_subscription_behind_a_trim_stops_then_goes_on_from_first(broker, make_agent):
    errors = []
    got = []
    lock = threading.Lock()

    def on_error(name, exc):
        with lock:
            errors.append((name, exc))

    agent = make_agent("trim", on_error=on_error)
    published = publish(agent, 300)
    assert published[-1].seq == 300
    assert trim(broker, "", 200) == 201

    agent.subscribe("t.", lambda event: got.append(event.seq), name="behind")
    wait_for(lambda: agent.subscription("behind").state == "failed" and errors,
             what="the subscription to fail")
    name, exc = errors[0]
    assert name == "behind"
    assert isinstance(exc, herald.TrimmedError)
    assert exc.first == 201
    assert "herald sub reset behind --state-dir DIR --to-seq 201" in str(exc)
    assert got == []
    assert agent.subscription("behind").delivered_seq == 0

    # from the first seq still there: the rest, in order, then live
    agent.subscribe("t.", lambda event: got.append(event.seq), name="onward",
                    start=exc.first)
    wait_for(lambda: len(got) >= 100, what="the 100 events after the trim")
    publish(agent, 20)
    wait_for(lambda: len(got) >= 120, what="20 live events")
    assert got == list(range(201, 321))
    assert len(errors) == 1


def test_the_events_iterator_raises_trimmed_error(broker, make_agent):
    agent = make_agent("trim-iter")
    publish(agent, 50)
    assert trim(broker, "t.", 30) == 31
    with pytest.raises(herald.TrimmedError) as caught:
        with agent.events("t.", name="iter", timeout=20) as events:
            for _event in events:
                pytest.fail("an event was delivered past the trim")
    assert caught.value.first == 31
    with agent.events("t.", name="iter2", start=31, timeout=20) as events:
        seqs = []
        for event in events:
            seqs.append(event.seq)
            if len(seqs) == 20:
                break
    assert seqs == list(range(31, 51))


def test_read_and_replay_of_a_trimmed_range_raise_it(broker, make_agent):
    agent = make_agent("trim-read", state_dir=None)
    publish(agent, 40, topic="r.1")
    assert trim(broker, "r.", 25) == 26
    with pytest.raises(herald.TrimmedError) as caught:
        agent.replay(from_seq=1)
    assert caught.value.first == 26
    assert [event.seq for event in agent.replay(from_seq=26)] == list(range(26, 41))
    with pytest.raises(herald.TrimmedError) as caught:
        agent.read("r.1")
    assert caught.value.first == 26
    assert [event.ver for event in agent.read("r.1", from_ver=26)] == list(range(26, 41))


def test_a_retry_of_a_trimmed_id_is_a_duplicate_with_its_seq(broker, make_agent):
    agent = make_agent("trim-dup")
    first_id = uuid.UUID("01939a00-0000-7000-8000-0000000000aa")
    stored = agent.publish("d.1", b"once", id=first_id)
    publish(agent, 10, topic="d.1")
    assert trim(broker, "", 11) == 12
    again = agent.publish("d.1", b"once", id=first_id)
    assert again.duplicate
    assert (again.seq, again.ver) == (stored.seq, stored.ver) == (1, 1)


def test_a_consumer_group_behind_a_trim_fails_naming_the_reset(broker, make_agent):
    errors = []
    agent = make_agent("trim-group", state_dir=None,
                       on_error=lambda name, exc: errors.append((name, exc)))
    publish(agent, 30, topic="g.1")
    assert trim(broker, "g.", 20) == 21
    got = []
    agent.subscribe("g.", lambda event: got.append(event.seq), name="billing",
                    group="billing")
    wait_for(lambda: errors, what="the group's failure")
    name, exc = errors[0]
    assert isinstance(exc, herald.TrimmedError), exc
    assert exc.first == 21
    assert "herald group reset billing --to-seq 21" in str(exc)
    assert got == []


def _seen_projection(agent, name, path, prefixes="p."):
    def setup(db):
        db.execute("CREATE TABLE IF NOT EXISTS seen (seq INTEGER PRIMARY KEY)")

    def apply(db, event):
        db.execute("INSERT INTO seen VALUES (?)", (event.seq,))
    return herald.SQLiteProjection(agent, name, path, prefixes=prefixes, setup=setup,
                                   apply=apply)


def test_a_projection_at_the_trim_point_goes_on_and_one_behind_it_fails(broker, make_agent,
                                                                        tmp_path):
    agent = make_agent("trim-projection", state_dir=None)
    publish(agent, 50, topic="p.1")
    path = str(tmp_path / "seen.db")
    projection = _seen_projection(agent, "seen", path)
    projection.start(timeout=20)
    assert projection.wait(50, 20).position == 50
    projection.close()
    # trimmed exactly to its position (and another prefix beyond it): it goes on
    assert trim(broker, "", 50) == 51
    publish(agent, 30, topic="q.1")
    assert trim(broker, "q.", 80) == 81
    publish(agent, 10, topic="p.1")
    projection = _seen_projection(agent, "seen", path)
    projection.start(timeout=20)
    assert projection.wait(90, 20).position == 90
    projection.close()
    # one that would start from seq 1 stops with TrimmedError, nothing applied
    fresh = _seen_projection(agent, "fresh", str(tmp_path / "fresh.db"))
    fresh.start(timeout=20)
    with pytest.raises(herald.TrimmedError) as caught:
        fresh.wait(90, 20)
    assert caught.value.first == 51
    assert fresh.status().state == "failed"
    assert fresh.status().position == 0
    fresh.close()

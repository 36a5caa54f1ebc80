"""test_agent - the synchronous herald.Agent against a real heraldd

Publish/subscribe round trips with typed events, conflicts, duplicates,
async publish futures, catch-up after the agent restarts (exactly once, in
order), handler exceptions and Retry, the iterator form, read/replay,
snapshots, stats and the exception classes.
"""

import builtins
import concurrent.futures
import datetime
import threading
import time
import uuid

import pytest

import herald
from conftest import wait_for


class Recorder:
    """A handler that records what it saw (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []

    def __call__(self, event):
        with self.lock:
            self.events.append(event)

    def seqs(self):
        with self.lock:
            return [e.seq for e in self.events]

    def count(self):
        with self.lock:
            return len(self.events)


def assert_once_in_order(seqs):
    assert seqs == sorted(set(seqs)), "not once, in order: %r" % seqs[:50]


def test_publish_then_subscribe_delivers_a_typed_event(make_agent):
    agent = make_agent()
    before = datetime.datetime.now(datetime.timezone.utc)
    published = agent.publish("orders.1", {"sku": "A7", "qty": 2}, type="OrderPlaced",
                              schema=2, meta={"correlation_id": "c-1"})
    assert isinstance(published, herald.Published)
    assert (published.seq, published.ver, published.duplicate) == (1, 1, False)
    assert isinstance(published.id, uuid.UUID)
    got = Recorder()
    sub = agent.subscribe("orders.", got, name="orders")
    assert isinstance(sub, herald.Subscription)
    wait_for(lambda: got.count() == 1, what="the event")
    event = got.events[0]
    assert isinstance(event, herald.Event)
    assert event.id == published.id
    assert (event.topic, event.seq, event.ver) == ("orders.1", 1, 1)
    assert event.type == "OrderPlaced" and event.schema == 2
    assert event.meta == {"correlation_id": "c-1"}
    assert event.json() == {"sku": "A7", "qty": 2}
    assert isinstance(event.data, bytes)
    assert isinstance(event.time, datetime.datetime)
    assert abs((event.time - before).total_seconds()) < 60
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    assert event.time == epoch + datetime.timedelta(microseconds=event.ts // 1000)
    assert event.subscription == "orders" and not event.redelivered and event.attempt == 1
    wait_for(lambda: sub.status().delivered_seq == 1, what="the checkpoint")
    assert sub.status().delivered == 1


def test_decorator_subscribes_by_prefix_and_skips_other_topics(make_agent):
    agent = make_agent()
    got = Recorder()

    @agent.subscribe(["orders.", "refunds."], start=herald.BEGINNING)
    def on_order(event):
        got(event)

    assert on_order.subscription.name == "on_order"
    for topic in ("orders.1", "stock.1", "refunds.1", "orders.2", "other"):
        agent.publish(topic, b"x")
    wait_for(lambda: got.count() == 3)
    time.sleep(0.3)
    assert [e.topic for e in got.events] == ["orders.1", "refunds.1", "orders.2"]
    assert agent.subscription("on_order").state in ("live", "catching_up")


def test_unpack_decodes_msgpack_data(make_agent):
    msgpack = pytest.importorskip("msgpack")
    agent = make_agent()
    agent.publish("m.1", msgpack.packb({"a": [1, 2]}))
    events = agent.read("m.1")
    assert events[0].unpack() == {"a": [1, 2]}
    agent.publish("m.2", "héllo")
    assert agent.read("m.2")[0].text() == "héllo"


def test_expect_conflict_raises_conflict_error_with_versions(make_agent):
    agent = make_agent()
    agent.publish("orders.9", b"a", expect=0)
    with pytest.raises(herald.ConflictError) as info:
        agent.publish("orders.9", b"b", expect=0)
    assert info.value.expected == 0 and info.value.actual == 1
    assert isinstance(info.value, herald.HeraldError)
    assert info.value.code == 3 and info.value.name == "conflict"
    assert agent.publish("orders.9", b"c", expect=1).ver == 2


def test_same_id_twice_is_a_duplicate_with_the_original_seq(make_agent):
    agent = make_agent()
    event_id = uuid.uuid4()
    first = agent.publish("p.1", b"x", id=event_id)
    agent.publish("p.2", b"y")
    again = agent.publish("p.1", b"x", id=event_id)
    assert not first.duplicate and again.duplicate
    assert (again.seq, again.ver, again.id) == (first.seq, first.ver, event_id)
    assert len(agent.replay()) == 2


def test_publish_async_returns_futures_resolved_in_order(make_agent):
    agent = make_agent()
    futures = [agent.publish_async("a.%d" % (i % 3), b"e%d" % i) for i in range(500)]
    assert all(isinstance(f, concurrent.futures.Future) for f in futures)
    results = [f.result(timeout=20) for f in futures]
    assert [r.seq for r in results] == list(range(1, 501))
    conflict = agent.publish_async("a.0", b"z", expect=0)
    with pytest.raises(herald.ConflictError):
        conflict.result(timeout=20)
    assert agent.stats().published >= 500


def test_catch_up_after_the_agent_restarts_is_exactly_once_in_order(make_agent, broker,
                                                                    state_dir):
    agent = make_agent()
    for i in range(300):
        agent.publish_async("orders.%d" % (i % 10), b"e%d" % i)
        if i % 3 == 0:
            agent.publish_async("other.%d" % i, b"o")
    agent.flush(20)
    got = Recorder()

    def slow(event):
        got(event)
        time.sleep(0.001)

    sub = agent.subscribe("orders.", slow, name="orders")
    wait_for(lambda: got.count() >= 100,
             what=lambda: "100 events: %d, %r, %r" % (got.count(), sub.status(), agent.stats()))
    agent.close()                       # mid-stream
    first = got.seqs()
    assert 100 <= len(first) < 300 or len(first) == 300
    publisher = make_agent(service="pub", state_dir=state_dir + "-pub")
    for i in range(200):
        publisher.publish_async("orders.%d" % i, b"late%d" % i)
    publisher.flush(20)
    again = Recorder()
    agent2 = make_agent()
    agent2.subscribe("orders.", again, name="orders")
    wait_for(lambda: len(first) + again.count() == 500, what="500 events in all")
    time.sleep(0.3)
    seqs = first + again.seqs()
    assert len(seqs) == 500
    assert_once_in_order(seqs)
    assert not any(e.redelivered for e in again.events)


def test_a_handler_that_raises_fails_the_subscription_without_checkpointing(make_agent):
    errors = []
    agent = make_agent(on_error=lambda name, exc: errors.append((name, exc)))
    for i in range(1, 6):
        agent.publish("t.%d" % i, b"x")
    got = Recorder()

    class Boom(Exception):
        pass

    def handler(event):
        if event.seq == 3:
            raise Boom("bad event %d" % event.seq)
        got(event)

    sub = agent.subscribe("t.", handler, name="t")
    wait_for(lambda: errors, what="on_error")
    name, exc = errors[0]
    assert name == "t" and isinstance(exc, Boom) and sub.exception is exc
    status = sub.status()
    assert status.state == "failed" and status.delivered_seq == 2
    assert status.error == herald.InternalError.code
    assert got.seqs() == [1, 2]
    # Subscribing again (the bug fixed) retries from that event
    agent.subscribe("t.", got, name="t")
    wait_for(lambda: got.count() == 5)
    assert got.seqs() == [1, 2, 3, 4, 5]


def test_a_herald_error_raised_by_a_handler_keeps_its_code(make_agent):
    errors = []
    agent = make_agent(on_error=lambda name, exc: errors.append(exc))
    agent.publish("h.1", b"x")
    agent.subscribe("h.", lambda e: (_ for _ in ()).throw(herald.CorruptStateError("no")),
                    name="h")
    wait_for(lambda: errors)
    assert isinstance(errors[0], herald.CorruptStateError)
    assert agent.subscription("h").error == herald.CorruptStateError.code


def test_retry_offers_the_same_event_again(make_agent):
    agent = make_agent(retry_max=0.05)
    agent.publish("r.1", b"x")
    agent.publish("r.2", b"y")
    got = Recorder()

    def handler(event):
        if event.seq == 1 and event.attempt < 3:
            raise herald.Retry()
        got(event)

    agent.subscribe("r.", handler, name="r")
    wait_for(lambda: got.count() == 2)
    assert [(e.seq, e.attempt) for e in got.events] == [(1, 3), (2, 1)]
    assert agent.subscription("r").retries == 2


def test_the_iterator_checkpoints_an_event_when_the_next_is_asked(make_agent):
    agent = make_agent()
    for i in range(20):
        agent.publish_async("it.%d" % i, b"%d" % i)
    agent.flush(20)
    seen = []
    with agent.events("it.", name="it", timeout=5) as events:
        assert isinstance(events, herald.EventStream)
        for event in events:
            seen.append(event.seq)
            if len(seen) == 10:
                break                   # the with block ends cleanly: 10 is done
    assert seen == list(range(1, 11))
    wait_for(lambda: agent.subscription("it").state == "stopped")
    assert agent.subscription("it").delivered_seq == 10
    # Resumes after 10; the timeout ends the iteration once all are seen
    rest = [e.seq for e in agent.events("it.", name="it", timeout=1)]
    assert rest == list(range(11, 21))


def test_an_exception_in_the_loop_leaves_the_event_to_be_delivered_again(make_agent):
    agent = make_agent()
    for i in range(5):
        agent.publish("x.%d" % i, b"")
    with pytest.raises(KeyError):
        with agent.events("x.", name="x") as events:
            for event in events:
                if event.seq == 3:
                    raise KeyError("processing failed")
    again = next(iter(agent.events("x.", name="x", timeout=5)))
    assert again.seq == 3 and again.redelivered


def test_read_returns_one_topics_stream_in_version_order(make_agent):
    agent = make_agent()
    for i in range(5):
        agent.publish("acct.1", {"n": i})
        agent.publish("acct.2", {"n": i})
    events = agent.read("acct.1")
    assert [e.ver for e in events] == [1, 2, 3, 4, 5]
    assert [e.json()["n"] for e in events] == [0, 1, 2, 3, 4]
    assert events.last == 5
    assert [e.ver for e in agent.read("acct.1", from_ver=2, to_ver=3)] == [2, 3]
    seen = []
    assert agent.read("acct.2", handler=seen.append) == []
    assert len(seen) == 5


def test_replay_by_seq_by_time_and_by_prefix(make_agent):
    agent = make_agent()
    for i in range(10):
        agent.publish("a.%d" % i, b"")
    time.sleep(0.05)
    midnight = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(0.05)
    for i in range(5):
        agent.publish("b.%d" % i, b"")
    assert [e.seq for e in agent.replay(from_seq=3, to_seq=5)] == [3, 4, 5]
    as_of = agent.replay(until_ts=midnight)
    assert [e.seq for e in as_of] == list(range(1, 11)) and as_of.last == 10
    assert [e.seq for e in agent.replay(from_ts=midnight)] == list(range(11, 16))
    assert [e.topic for e in agent.replay(prefixes="b.")][:2] == ["b.0", "b.1"]

    def stop_at_4(event):
        if event.seq == 4:
            raise ValueError("enough")

    with pytest.raises(ValueError):
        agent.replay(handler=stop_at_4)


def test_snapshots_save_and_load(make_agent):
    agent = make_agent()
    assert agent.load_snapshot("stock") is None
    agent.save_snapshot("stock", b'{"A7": 8}', seq=42)
    snap = agent.load_snapshot("stock")
    assert isinstance(snap, herald.Snapshot)
    assert (snap.seq, snap.data) == (42, b'{"A7": 8}')
    agent.save_snapshot("stock", b"v2", seq=43)
    assert agent.load_snapshot("stock") == herald.Snapshot(43, b"v2")


def test_stats_count_what_the_agent_did(make_agent):
    agent = make_agent()
    for i in range(3):
        agent.publish("s.%d" % i, b"")
    got = Recorder()
    agent.subscribe("s.", got, name="s")
    wait_for(lambda: got.count() == 3)
    wait_for(lambda: agent.stats().broker_head == 3)
    stats = agent.stats()
    assert isinstance(stats, herald.Stats)
    assert stats.published == 3 and stats.delivered == 3 and stats.outbox_depth == 0
    assert stats.broker_reachable is True


def test_local_refusals_and_locks_are_their_own_exceptions(make_agent, state_dir):
    agent = make_agent()
    with pytest.raises(herald.InvalidArgumentError) as info:
        agent.publish("$reserved", b"")
    assert isinstance(info.value, ValueError)
    with pytest.raises(herald.InvalidArgumentError):
        agent.subscribe("a.", lambda e: None, name="bad name!")
    with pytest.raises(herald.LockedError):
        herald.Agent("other", state_dir=state_dir)
    with pytest.raises(herald.NotFoundError):
        agent.unsubscribe("nothing")
    with pytest.raises(TypeError):
        agent.publish("a.1", 12)


def test_every_herald_err_has_its_own_exception_class():
    codes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]
    classes = [herald.error_class(code) for code in codes]
    assert len(set(classes)) == len(codes)
    assert all(issubclass(cls, herald.HeraldError) and cls.code == code
               for cls, code in zip(classes, codes))
    assert herald.error_class(6) is herald.OverloadedError
    assert herald.error_class(4) is herald.NotLeaderError
    assert herald.error_class(27) is herald.BrokerUnavailable
    assert issubclass(herald.TimeoutError, builtins.TimeoutError)


def test_publish_with_the_broker_down_times_out_queued_then_is_sent(tmp_path, state_dir):
    from conftest import Broker
    from conftest import free_port
    broker = Broker(tmp_path, "late")               # not started yet
    broker.api_port, broker.fanout_port = free_port(), free_port()
    with herald.Agent("late", state_dir=state_dir, api=broker.api, fanout=broker.fanout,
                      timeout=0.3) as agent:
        with pytest.raises(herald.TimeoutError) as info:
            agent.publish("q.1", b"queued")
        assert isinstance(info.value.id, uuid.UUID)
        with pytest.raises((herald.TimeoutError, herald.BrokerUnavailable)):
            agent.subscribe("q.", lambda e: None, name="q", start=herald.NOW)
        assert agent.stats().outbox_depth == 1
        broker.start()
        try:
            agent.flush(10)
            events = agent.replay()
            assert [e.id for e in events] == [info.value.id]
        finally:
            assert broker.stop() is None


def test_blocking_calls_release_the_gil(state_dir):
    from conftest import free_port
    api, fanout = "tcp://127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port()
    with herald.Agent("gil", state_dir=state_dir, api=api, fanout=fanout,
                      timeout=1.0) as agent:
        ticks = [0]
        blocked = threading.Event()

        def spin():
            blocked.wait(5)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                ticks[0] += 1

        thread = threading.Thread(target=spin)
        thread.start()
        blocked.set()
        with pytest.raises(herald.TimeoutError):
            agent.publish("g.1", b"")           # blocks 1 s in C: no broker
        thread.join()
        assert ticks[0] > 10_000, "the other thread did not run: %d" % ticks[0]


def test_closing_fails_pending_futures_with_timeout_and_keeps_the_event(state_dir, broker):
    from conftest import free_port
    api = "tcp://127.0.0.1:%d" % free_port()
    agent = herald.Agent("down", state_dir=state_dir, api=api,
                         fanout="tcp://127.0.0.1:%d" % free_port())
    future = agent.publish_async("kept.1", b"queued")
    agent.close()
    assert agent.closed
    with pytest.raises(herald.TimeoutError):
        future.result(timeout=5)
    with pytest.raises(herald.InvalidArgumentError):
        agent.publish("kept.2", b"")
    agent.close()                               # idempotent
    # The next agent on the directory sends it, to a broker that answers
    with herald.Agent("up", state_dir=state_dir, api=broker.api,
                      fanout=broker.fanout) as again:
        again.flush(10)
        assert [e.topic for e in again.replay()] == ["kept.1"]

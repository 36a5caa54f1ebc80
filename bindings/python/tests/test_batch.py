"""test_batch - batch handlers from Python (subscribe(..., batch=True); issue 16)

Against a real heraldd: a batch handler sees every event once, in order, in
lists; a handler raising in the middle of a batch (``handled`` says how many
were done: those are committed, the rest comes again on resume); Retry with
and without ``handled``; returning a count; a Python process SIGKILLed in
the middle of a batch handler: on restart exactly its uncommitted events
come again, each flagged ``redelivered``, nothing lost; a consumer group
member with a batch handler; AsyncAgent with plain and ``async def`` batch
handlers.  Nothing asserts timings.
"""
import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import herald
from conftest import BUILDDIR, PACKAGE_ROOT, wait_for


def publish(agent, prefix, count, topics=1):
    for i in range(count):
        agent.publish_async("%s%d" % (prefix, i % topics), b"%d" % i)
    agent.flush(30)


def test_a_batch_handler_sees_every_event_once_in_order(make_agent):
    agent = make_agent()
    publish(agent, "b.", 1000, topics=7)
    batches = []
    agent.subscribe("b.", batches.append, name="b", batch=True)
    wait_for(lambda: sum(map(len, batches)) >= 1000,
             what=lambda: "1000 events, got %d" % sum(map(len, batches)))
    events = [e for batch in batches for e in batch]
    assert [e.seq for e in events] == list(range(1, 1001))
    assert all(isinstance(b, list) and 1 <= len(b) <= 256 for b in batches)
    assert any(len(b) > 1 for b in batches)     # batched, not one by one
    first = events[0]
    assert first.topic == "b.0" and first.data == b"0" and first.ver == 1
    assert first.subscription == "b" and not first.redelivered and first.attempt == 1
    assert first.schema == 1 and first.meta == {} and first.type is None
    assert len({e.id for e in events}) == 1000
    status = agent.subscription("b")
    assert status.delivered == 1000 and status.delivered_seq == 1000
    # live events come in batches too
    publish(agent, "b.", 10)
    wait_for(lambda: sum(map(len, batches)) == 1010)


def test_fields_match_the_per_event_handler(make_agent):
    agent = make_agent()
    agent.publish("f.1", {"a": 1}, type="thing", schema=3, meta={"k": "v", "trace": "x"})
    agent.publish("f.2", b"")
    one, many = [], []
    agent.subscribe("f.", one.append, name="one")
    agent.subscribe("f.", many.extend, name="many", batch=True)
    wait_for(lambda: len(one) == 2 and len(many) == 2)
    def fields(e):
        return (e.id, e.topic, e.seq, e.ver, e.ts, e.type, e.schema, e.meta, e.data,
                e.redelivered, e.attempt)
    assert [fields(e) for e in one] == [fields(e) for e in many]
    assert [e.subscription for e in many] == ["many", "many"]
    assert many[0].json() == {"a": 1} and many[0].meta == {"k": "v", "trace": "x"}


def test_an_exception_mid_batch_commits_what_it_says_and_the_rest_comes_again(
        make_agent, tmp_path):
    agent = make_agent()
    publish(agent, "x.", 50)
    errors = []
    other = str(tmp_path / "err")
    os.mkdir(other)
    agent_err = make_agent("err", state_dir=other,
                           on_error=lambda name, exc: errors.append((name, exc)))
    seen = []

    def handler(events):
        for index, event in enumerate(events):
            if event.seq == 20:
                exc = KeyError("no 20")
                exc.handled = index             # the ones before 20 are done
                raise exc
            seen.append(event.seq)

    agent_err.subscribe("x.", handler, name="x", batch=True)
    wait_for(lambda: agent_err.subscription("x").state == "failed")
    assert seen == list(range(1, 20))
    assert agent_err.subscription("x").delivered_seq == 19
    # on_error is called just after the state turns FAILED: wait for it
    wait_for(lambda: errors, what="on_error")
    assert errors[0][0] == "x" and isinstance(errors[0][1], KeyError)
    agent_err.close()
    # resumed (per event this time): 20 onwards, 20 flagged (in doubt: the
    # handler was given it and did not say it was done)
    again = []
    agent2 = make_agent("err", state_dir=other)
    agent2.subscribe("x.", again.append, name="x")
    wait_for(lambda: len(again) == 31)
    assert [e.seq for e in again] == list(range(20, 51))
    assert again[0].redelivered


def test_an_exception_without_handled_commits_none_of_the_batch(make_agent):
    agent = make_agent()
    publish(agent, "y.", 10)
    calls = []

    def handler(events):
        calls.append([e.seq for e in events])
        raise ValueError("all or nothing")

    agent.subscribe("y.", handler, name="y", batch=True)
    wait_for(lambda: agent.subscription("y").state == "failed")
    assert agent.subscription("y").delivered_seq == 0
    assert agent.subscription("y").delivered == 0
    assert calls[0][0] == 1


def test_retry_offers_the_rest_again_with_attempt_counted(make_agent):
    agent = make_agent(retry_max=0.05)
    publish(agent, "r.", 10)
    calls = []

    def handler(events):
        calls.append([(e.seq, e.attempt) for e in events])
        if len(calls) == 1:
            raise herald.Retry(handled=3)       # 1..3 done, the rest again
        if len(calls) == 2:
            raise herald.Retry()                # none done
        return None

    agent.subscribe("r.", handler, name="r", batch=True)
    wait_for(lambda: agent.subscription("r").delivered_seq == 10)
    assert calls[0][0] == (1, 1)
    assert calls[1][0] == (4, 2)                # 4 was offered in the first call too
    assert calls[2][0] == (4, 3)
    assert [s for call in calls[2:] for s, _ in call] == list(range(4, 11))
    assert agent.subscription("r").retries == 2
    assert agent.subscription("r").delivered == 10


def test_returning_a_count_hands_the_rest_again_at_once(make_agent):
    agent = make_agent()
    publish(agent, "c.", 30)
    calls = []

    def handler(events):
        calls.append([e.seq for e in events])
        return min(len(events), 4)              # four at a time

    agent.subscribe("c.", handler, name="c", batch=True)
    wait_for(lambda: agent.subscription("c").delivered_seq == 30)
    firsts = [call[0] for call in calls]
    assert firsts == sorted(set(firsts)) and firsts[:3] == [1, 5, 9]
    assert agent.subscription("c").retries == 0


CHILD = """
import os, sys, time
import herald
log = open(os.environ["LOG"], "a", buffering=1)
agent = herald.Agent("child", api=os.environ["API"], fanout=os.environ["FANOUT"],
                     state_dir=os.environ["STATE"], heartbeat=0.2)
def handle(events):
    for event in events:
        log.write("%d %d\\n" % (event.seq, int(event.redelivered)))
        if event.seq == int(os.environ["STUCK"]):
            log.write("stuck\\n")
            time.sleep(3600)                    # mid-batch: SIGKILLed here
agent.subscribe("k.", handle, name="k", batch=True)
time.sleep(3600)
"""


def test_kill_9_mid_batch_redelivers_exactly_the_uncommitted_flagged(make_agent, broker,
                                                                     tmp_path):
    pub = make_agent("pub")
    publish(pub, "k.", 300)
    log = tmp_path / "child.log"
    state = tmp_path / "child-state"
    state.mkdir()
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT), HERALD_BUILDDIR=str(BUILDDIR),
               API=broker.api, FANOUT=broker.fanout, LOG=str(log), STUCK="150",
               STATE=str(state))
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD)], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        def stuck():
            assert child.poll() is None, child.stderr.read().decode()
            return log.exists() and "stuck" in log.read_text()
        wait_for(stuck, what="the child stuck in its batch handler at seq 150")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stderr.close()
    lines = log.read_text().split()
    assert lines[-1] == "stuck"
    handled = [int(seq) for seq in lines[:-1:2]]
    assert handled == list(range(1, 151))
    assert not any(int(flag) for flag in lines[1:-1:2])

    seen = []
    again = herald.Agent("child", api=broker.api, fanout=broker.fanout, state_dir=str(state),
                         heartbeat=0.2)
    try:
        again.subscribe("k.", seen.extend, name="k", batch=True)
        wait_for(lambda: seen and seen[-1].seq == 300,
                 what=lambda: "seq 300, got %r" % [(e.seq, e.redelivered) for e in seen])
    finally:
        again.close()
    seqs = [e.seq for e in seen]
    flagged = [e.seq for e in seen if e.redelivered]
    # The batch the child died in: from its first event (the one after the
    # last committed) to its last; every one of them flagged, and the events
    # before it (committed) not delivered again, those after it not flagged
    low = seqs[0]
    assert seqs == list(range(low, 301)), seqs
    assert low <= 150 and flagged == list(range(low, low + len(flagged))), flagged
    assert 150 in flagged and len(flagged) <= 256
    # the delivery batch the child was in held everything up to its end
    assert flagged[-1] >= 150


def test_a_group_member_with_a_batch_handler(make_agent):
    pub = make_agent("pub")
    publish(pub, "g.", 200, topics=10)
    batches = []
    member = make_agent("svc", state_dir=None)
    member.subscribe("g.", batches.append, group="g", partitions=4, session=1.0,
                     batch_max=50, batch=True)
    wait_for(lambda: sum(map(len, batches)) >= 200)
    events = [e for batch in batches for e in batch]
    assert sorted(e.seq for e in events) == list(range(1, 201))
    assert all(len(b) <= 50 for b in batches)
    assert all(e.subscription == "g" and not e.redelivered for e in events)
    wait_for(lambda: member.group_status("g").committed == 200)


def test_a_group_batch_handler_retrying_mid_batch(make_agent):
    pub = make_agent("pub")
    publish(pub, "h.", 20)
    seen = []
    retries = []

    def handler(events):
        for index, event in enumerate(events):
            if event.seq == 8 and len(retries) < 2:
                retries.append(index)
                raise herald.Retry(handled=index)   # 1..7 done; 8.. again
            seen.append(event.seq)

    member = make_agent("svc", state_dir=None, retry_max=0.02)
    member.subscribe("h.", handler, group="h", partitions=1, session=1.0, batch_max=10,
                     batch=True)
    wait_for(lambda: member.group_status("h").committed == 20)
    assert seen == list(range(1, 21))               # each once, in order
    assert member.subscription("h").retries == 2
    assert member.subscription("h").delivered == 20


def test_async_agent_batch_handlers(broker, state_dir):
    async def main():
        async with herald.AsyncAgent("aio", api=broker.api, fanout=broker.fanout,
                                     state_dir=state_dir, heartbeat=0.2) as agent:
            for i in range(500):
                agent.publish("a.%d" % (i % 3), b"x")
            await agent.flush(30)
            plain, coro = [], []
            agent.subscribe("a.", plain.append, name="plain", batch=True)

            calls = []

            async def handle(events):
                calls.append(len(events))
                if len(calls) == 1:
                    raise herald.Retry(handled=2)
                await asyncio.sleep(0)
                coro.extend(events)
                return None

            agent.subscribe("a.", handle, name="coro", batch=True)
            for _ in range(2000):
                if sum(map(len, plain)) >= 500 and len(coro) >= 498:
                    break
                await asyncio.sleep(0.01)
            assert [e.seq for b in plain for e in b] == list(range(1, 501))
            # the first call raised Retry(handled=2): 1, 2 committed (not
            # seen by coro, which only keeps what it returned from)
            assert [e.seq for e in coro] == list(range(3, 501))
            assert agent.subscription("coro").delivered_seq == 500
            assert agent.subscription("coro").delivered == 500
    asyncio.run(main())


def test_batch_subscribe_as_a_decorator(make_agent):
    agent = make_agent()
    publish(agent, "d.", 5)
    seen = []

    @agent.subscribe("d.", batch=True)
    def deco(events):
        seen.extend(e.seq for e in events)

    assert deco.subscription.name == "deco"
    wait_for(lambda: seen == [1, 2, 3, 4, 5])

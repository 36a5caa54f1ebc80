"""test_groups - consumer groups from Python (docs/groups.md, docs/python.md)

Against a real heraldd: two agents of one group share the work (each event
once, a topic at one member); a group with no state directory resumes where
it left off after close and reopen (and a broker restart); an AsyncAgent
member with an async handler; the decorator and the iterator forms;
group_status figures; and a member process killed with SIGKILL mid-batch:
the next owner gets the unfinished batch flagged ``redelivered``.  Sessions
are short (1 s) so that a dead member expires quickly; nothing asserts
timings.
"""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import herald
from conftest import BUILDDIR, PACKAGE_ROOT, wait_for

SESSION = 1.0           # seconds: a killed member's partitions move on after this


def by_topic(events):
    topics = {}
    for event in events:
        topics.setdefault(event.topic, []).append(event.seq)
    return topics


def in_order_per_topic(events):
    return all(seqs == sorted(seqs) for seqs in by_topic(events).values())


def publish(agent, prefix, count, topics, first=0):
    for i in range(first, first + count):
        agent.publish("%s%d" % (prefix, i % topics), {"i": i})


def test_two_agents_in_one_group_share_the_work(broker, make_agent, tmp_path):
    pub = make_agent("pub")
    seen = {"a": [], "b": []}
    a = make_agent("svc", state_dir=None)
    b = make_agent("svc", state_dir=None)
    a.subscribe("work.", seen["a"].append, group="work", partitions=8, session=SESSION)
    wait_for(lambda: a.group_status("work").owned == 8, what="a holding every partition")
    b.subscribe("work.", seen["b"].append, group="work", partitions=8, session=SESSION)

    def shared():
        owned = a.group_status("work").owned, b.group_status("work").owned
        return sum(owned) == 8 and min(owned) > 0
    wait_for(shared, what=lambda: "the partitions shared: a %r, b %r"
             % (a.group_status("work"), b.group_status("work")))

    publish(pub, "work.", 300, 60)
    wait_for(lambda: len(seen["a"]) + len(seen["b"]) >= 300,
             what=lambda: "300 events, got %d + %d" % (len(seen["a"]), len(seen["b"])))
    everything = seen["a"] + seen["b"]
    seqs = sorted(event.seq for event in everything)
    assert seqs == list(range(1, 301)), "each event exactly once"
    assert seen["a"] and seen["b"], "both members worked"
    assert not set(by_topic(seen["a"])) & set(by_topic(seen["b"])), "a topic at one member"
    assert in_order_per_topic(seen["a"]) and in_order_per_topic(seen["b"])
    assert not any(event.redelivered for event in everything)
    assert {event.subscription for event in everything} == {"work"}
    # a member leaving hands its partitions to the other at once
    b.close()
    wait_for(lambda: a.group_status("work").owned == 8, what="a holding all again")
    publish(pub, "work.", 20, 60, first=300)
    wait_for(lambda: len(seen["a"]) + len(seen["b"]) >= 320)
    assert sorted(e.seq for e in seen["a"] + seen["b"]) == list(range(1, 321))


def test_a_group_with_no_state_dir_resumes_where_it_left_off(broker, make_agent):
    pub = make_agent("pub")
    publish(pub, "r.", 10, 3)
    first = []
    agent = make_agent("svc", state_dir=None)
    agent.subscribe("r.", first.append, group="resume", partitions=4, session=SESSION)
    wait_for(lambda: len(first) == 10)
    agent.close()                               # leaves the group: commits what it did
    publish(pub, "r.", 10, 3, first=10)
    # the position is the broker's, in its store: a restart keeps it
    pub.close()
    why = broker.stop()
    assert why is None, why
    broker.start()
    pub = make_agent("pub")
    publish(pub, "r.", 5, 3, first=20)
    second = []
    again = make_agent("svc", state_dir=None)
    # joining an existing group: its partitions and session need not be given
    sub = again.subscribe("r.", second.append, group="resume")
    wait_for(lambda: len(second) >= 15, what=lambda: "seqs 11..25, got %r"
             % [e.seq for e in second])
    assert sorted(e.seq for e in first) == list(range(1, 11))
    assert sorted(e.seq for e in second) == list(range(11, 26))
    assert not any(e.redelivered for e in first + second)
    assert sub.group == sub.name == "resume"
    assert again.group_status("resume").partitions == 4


def test_no_state_dir_refuses_a_local_subscription_with_the_agents_message(make_agent):
    agent = make_agent("svc", state_dir=None)
    with pytest.raises(herald.InvalidArgumentError) as info:
        agent.subscribe("x.", lambda e: None, name="local")
    message = str(info.value)
    assert "state" in message and message != "invalid argument", message
    with pytest.raises(herald.InvalidArgumentError):
        agent.events("x.", name="local-iter")
    # and the refused subscription left nothing behind
    with pytest.raises(herald.NotFoundError):
        agent.subscription("local")
    with pytest.raises(herald.InvalidArgumentError):
        agent.save_snapshot("s", b"state", 1)
    # publishing needs no state directory (the outbox is in memory)
    assert agent.publish("x.1", b"one").seq == 1
    future = agent.publish_async("x.2", b"two")
    agent.flush(10)
    assert future.result().seq == 2


def test_bad_group_arguments_are_refused_before_anything_runs(make_agent):
    agent = make_agent("svc", state_dir=None)
    handler = lambda e: None                    # noqa: E731
    with pytest.raises(ValueError):
        agent.subscribe("x.", handler, group="g", name="other")
    with pytest.raises(ValueError):
        agent.subscribe("x.", handler, name="local", partitions=4)
    for bad in (dict(partitions=0), dict(partitions=True), dict(batch_max=-1),
                dict(session=0), dict(session="3")):
        with pytest.raises(ValueError):
            agent.subscribe("x.", handler, group="g", **bad)
    with pytest.raises(TypeError):
        agent.subscribe("x.", handler, group=7)
    # what the C agent checks comes back with its message
    for group, bad in ((".dot", {}), ("g", dict(partitions=5000)),
                       ("g", dict(session=10_000)), ("g", dict(batch_max=1000))):
        with pytest.raises(herald.InvalidArgumentError) as info:
            agent.subscribe("x.", handler, group=group, **bad)
        assert str(info.value) != "invalid argument", (group, bad)
    with pytest.raises(herald.NotFoundError):
        agent.group_status("g")
    agent.subscribe("x.", handler, group="g")
    with pytest.raises(herald.InvalidArgumentError):
        agent.subscribe("x.", handler, group="g")         # already subscribed


def test_the_decorator_and_the_iterator_take_a_group(broker, make_agent):
    pub = make_agent("pub")
    publish(pub, "d.", 12, 4)
    agent = make_agent("svc", state_dir=None)
    seen = []

    @agent.subscribe("d.", group="billing", partitions=4, session=SESSION, batch_max=5)
    def on_event(event):
        seen.append(event)

    assert callable(on_event) and on_event.subscription.group == "billing"
    assert on_event.subscription.name == "billing"
    wait_for(lambda: len(seen) == 12)
    assert sorted(e.seq for e in seen) == list(range(1, 13))
    assert in_order_per_topic(seen)
    assert on_event.subscription.group_status().owned == 4
    on_event.subscription.unsubscribe()

    # the iterator: an event is done when the loop asks for the next one
    got = []
    with agent.events("d.", group="iter", partitions=2, session=SESSION,
                      timeout=10) as events:
        for event in events:
            got.append(event.seq)
            if len(got) == 6:
                break
    rest = []
    with agent.events("d.", group="iter", timeout=20) as events:
        for event in events:
            rest.append(event.seq)
            if len(got) + len(rest) == 12:
                break
    assert sorted(got + rest) == list(range(1, 13)), (got, rest)


def test_an_async_agent_member_with_an_async_handler(broker, make_agent):
    pub = make_agent("pub")

    async def main():
        async with herald.AsyncAgent("svc", state_dir=None, api=broker.api,
                                     fanout=broker.fanout, heartbeat=0.2) as agent:
            seen = []

            @agent.subscribe("aio.", group="aio", partitions=4, session=SESSION,
                             batch_max=7)
            async def on_event(event):
                await asyncio.sleep(0)
                seen.append(event)

            publish(pub, "aio.", 40, 5)        # (blocks the loop: dispatch waits)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while len(seen) < 40 and loop.time() < deadline:
                await asyncio.sleep(0.01)
            assert sorted(e.seq for e in seen) == list(range(1, 41))
            assert in_order_per_topic(seen)
            assert on_event.subscription.group == "aio"
            while agent.group_status("aio").committed < 40 and loop.time() < deadline:
                await asyncio.sleep(0.01)
            status = agent.group_status("aio")
            assert status.committed == 40 and status.lag == 0 and status.owned == 4

            got = []
            async with agent.aevents("aio.", group="aio-iter", session=SESSION,
                                     timeout=5) as events:
                async for event in events:
                    got.append(event.seq)
                    if len(got) == 40:
                        break
            assert sorted(got) == list(range(1, 41))
    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_rebalance_waits_for_an_async_handler_in_hand(broker, make_agent):
    """A coroutine handler defers its event's answer; a member that must
    give up partitions meanwhile finishes that event first, and the new
    owner never gets it (neither at the same time nor again)."""
    pub = make_agent("pub")
    publish(pub, "slow.", 20, 8)

    async def main():
        release = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def until(predicate, what):
            deadline = loop.time() + 20
            while not predicate():
                assert loop.time() < deadline, "timed out waiting for " + what
                await asyncio.sleep(0.01)

        async with herald.AsyncAgent("svc", state_dir=None, api=broker.api,
                                     fanout=broker.fanout, heartbeat=0.2) as agent:
            mine, theirs = [], []

            @agent.subscribe("slow.", group="slow", partitions=4, session=SESSION)
            async def on_event(event):
                if not mine:
                    await release.wait()            # the first event stays in hand
                mine.append(event)

            await until(lambda: agent.group_status("slow").owned == 4, "all 4 held")
            generation = agent.group_status("slow").generation
            other = make_agent("svc2", state_dir=None)
            other.subscribe("slow.", theirs.append, group="slow", session=SESSION)
            # the broker has told the first member to give partitions up...
            await until(lambda: agent.group_status("slow").generation > generation
                        and other.group_status("slow").joined, "the rebalance heard")
            # ...which it cannot do in the middle of a batch: for two sessions,
            # nothing moves (an absence, so a wait of fixed length)
            await asyncio.sleep(2 * SESSION)
            assert other.group_status("slow").owned == 0 and not theirs and not mine
            release.set()
            await until(lambda: other.group_status("slow").owned > 0, "partitions moved")
            await until(lambda: len(mine) + len(theirs) >= 20, "every event")
            everything = mine + theirs
            assert sorted(e.seq for e in everything) == list(range(1, 21))
            assert not any(e.redelivered for e in everything)
            # a topic that moved did so between two events: order holds across
            mine_at, theirs_at = by_topic(mine), by_topic(theirs)
            for topic in set(mine_at) & set(theirs_at):
                assert max(mine_at[topic]) < min(theirs_at[topic]), topic
            assert in_order_per_topic(mine) and in_order_per_topic(theirs)
    asyncio.run(asyncio.wait_for(main(), 60))


def test_group_status_figures_move(broker, make_agent):
    pub = make_agent("pub")
    a = make_agent("svc", state_dir=None)
    seen = []
    a.subscribe("s.", seen.append, group="stats", partitions=6, session=SESSION,
                batch_max=10)
    wait_for(lambda: a.group_status("stats").joined)
    joined = a.group_status("stats")
    assert joined.member and joined.partitions == 6 and joined.generation >= 1
    wait_for(lambda: a.group_status("stats").owned == 6)
    publish(pub, "s.", 50, 12)
    wait_for(lambda: a.group_status("stats").committed == 50,
             what=lambda: repr(a.group_status("stats")))
    busy = a.group_status("stats")
    assert busy.commits >= 5 and busy.lag == 0 and busy.redelivered == 0
    assert busy.fenced == 0 and busy.rebalances >= 1
    # a second member: the first gives up partitions
    b = make_agent("svc2", state_dir=None)
    b.subscribe("s.", lambda e: None, group="stats", session=SESSION)
    wait_for(lambda: a.group_status("stats").owned < 6
             and b.group_status("stats").owned > 0)
    moved = a.group_status("stats")
    assert moved.rebalances > busy.rebalances
    assert moved.generation > joined.generation
    assert b.group_status("stats").member != moved.member
    # a local subscription has no group figures
    pub.subscribe("s.", lambda e: None, name="local")
    with pytest.raises(herald.NotFoundError):
        pub.group_status("local")


CHILD = """
import os, sys, time
import herald
log = open(os.environ["LOG"], "a", buffering=1)
agent = herald.Agent("child", api=os.environ["API"], fanout=os.environ["FANOUT"],
                     state_dir=None, heartbeat=0.2)
def handle(event):
    log.write("%d %d\\n" % (event.seq, int(event.redelivered)))
    if event.seq == int(os.environ["STUCK"]):
        log.write("stuck\\n")
        time.sleep(3600)                    # mid-batch: SIGKILLed here
agent.subscribe("crash.", handle, group="crash", partitions=1,
                session=float(os.environ["SESSION"]), batch_max=10)
time.sleep(3600)
"""


def test_a_killed_members_batch_comes_again_flagged_redelivered(broker, make_agent,
                                                                 tmp_path):
    pub = make_agent("pub")
    publish(pub, "crash.", 30, 3)
    log = tmp_path / "child.log"
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT), HERALD_BUILDDIR=str(BUILDDIR),
               API=broker.api, FANOUT=broker.fanout, LOG=str(log), STUCK="4",
               SESSION=str(SESSION))
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD)], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        def stuck():
            assert child.poll() is None, child.stderr.read().decode()
            return log.exists() and "stuck" in log.read_text()
        wait_for(stuck, what="the child stuck in its handler at seq 4")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stderr.close()
    lines = log.read_text().split()
    assert lines[-1] == "stuck"
    handled = [int(seq) for seq, _flag in zip(lines[:-1:2], lines[1:-1:2])]
    assert handled == [1, 2, 3, 4], lines

    seen = []
    agent = make_agent("svc", state_dir=None)
    agent.subscribe("crash.", seen.append, group="crash", partitions=1, session=SESSION,
                    batch_max=10)
    wait_for(lambda: seen and seen[-1].seq == 30 or len(seen) > 30,
             what=lambda: "seq 30, got %r" % [(e.seq, e.redelivered) for e in seen])
    seqs = [e.seq for e in seen]
    flagged = [e.seq for e in seen if e.redelivered]
    # the child's batch (declared, not committed) comes again, flagged; it
    # holds the event it died in and every one it handled after its last
    # commit, at most batch_max of them; nothing after it is flagged
    low = seqs[0]
    assert seqs == list(range(low, 31)), seqs
    assert low <= 4 and flagged == list(range(low, low + len(flagged))), flagged
    assert 4 in flagged and len(flagged) <= 10, flagged
    status = agent.group_status("crash")
    assert status.redelivered == len(flagged)
    wait_for(lambda: agent.group_status("crash").committed == 30)

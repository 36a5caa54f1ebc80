"""test_aio - herald.AsyncAgent: asyncio driven by the C agent's fd

Handlers (plain and async def) run on the loop's thread through
herald_agent_dispatch; a coroutine handler may await its own publish;
aevents() is exactly once in order; an exception in an async handler is
reported and not checkpointed.
"""

import asyncio
import threading

import pytest

import herald


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def agent_options(broker, state_dir, **extra):
    options = dict(state_dir=state_dir, api=broker.api, fanout=broker.fanout, heartbeat=0.2)
    options.update(extra)
    return options


async def until(predicate, timeout=20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def test_publish_returns_an_asyncio_future_and_handlers_run_on_the_loop(broker, state_dir):
    async def main():
        async with herald.AsyncAgent("a", **agent_options(broker, state_dir)) as agent:
            future = agent.publish("orders.1", {"n": 1}, type="OrderPlaced")
            assert isinstance(future, asyncio.Future)
            published = await future
            assert (published.seq, published.ver, published.duplicate) == (1, 1, False)
            results = await asyncio.gather(*(agent.publish("orders.%d" % i, b"x")
                                             for i in range(2, 202)))
            assert [r.seq for r in results] == list(range(2, 202))
            seen, threads = [], set()

            @agent.subscribe("orders.")
            def on_order(event):
                threads.add(threading.get_ident())
                seen.append(event.seq)

            await until(lambda: len(seen) == 201)
            assert seen == list(range(1, 202))
            assert threads == {threading.get_ident()}
            with pytest.raises(herald.ConflictError) as info:
                await agent.publish("orders.1", b"again", expect=0)
            assert info.value.actual == 1
    run(main())


def test_an_async_handler_may_await_its_own_publish(broker, state_dir):
    async def main():
        async with herald.AsyncAgent("inv", **agent_options(broker, state_dir)) as agent:
            reactions = []

            @agent.subscribe("orders.", name="reserve")
            async def reserve(event):
                published = await agent.publish("stock." + event.topic[7:], b"reserved")
                reactions.append((event.seq, published.seq))

            for i in range(20):
                await agent.publish("orders.%d" % i, b"")
            await until(lambda: len(reactions) == 20)
            assert [r[0] for r in reactions] == sorted(r[0] for r in reactions)
            assert len(await agent.replay(prefixes="stock.")) == 20
            status = agent.subscription("reserve")
            await until(lambda: agent.subscription("reserve").delivered == 20)
            assert status.state in ("live", "catching_up")
    run(main())


def test_aevents_is_exactly_once_in_order_across_streams(broker, state_dir):
    async def main():
        async with herald.AsyncAgent("s", **agent_options(broker, state_dir)) as agent:
            await asyncio.gather(*(agent.publish("e.%d" % i, b"%d" % i) for i in range(30)))
            first = []
            async with agent.aevents("e.", name="e") as events:
                async for event in events:
                    first.append(event.seq)
                    if len(first) == 12:
                        break
            rest = [event.seq async for event in agent.aevents("e.", name="e", timeout=1)]
            assert first + rest == list(range(1, 31))
    run(main())


def test_an_exception_in_an_async_handler_is_reported_and_not_checkpointed(broker, state_dir):
    errors = []

    async def main():
        async with herald.AsyncAgent(
                "x", on_error=lambda name, exc: errors.append((name, exc)),
                **agent_options(broker, state_dir)) as agent:
            for i in range(1, 5):
                await agent.publish("x.%d" % i, b"")
            seen = []

            async def handler(event):
                await asyncio.sleep(0)
                if event.seq == 3:
                    raise RuntimeError("cannot handle 3")
                seen.append(event.seq)

            sub = agent.subscribe("x.", handler, name="x")
            await until(lambda: errors)
            assert errors[0][0] == "x" and isinstance(errors[0][1], RuntimeError)
            status = sub.status()
            assert status.state == "failed" and status.delivered_seq == 2
            assert seen == [1, 2]
            agent.subscribe("x.", lambda e: seen.append(e.seq), name="x")
            await until(lambda: len(seen) == 4)
            assert seen == [1, 2, 3, 4]
    run(main())


def test_read_replay_snapshots_and_stats_from_asyncio(broker, state_dir):
    async def main():
        async with herald.AsyncAgent("r", **agent_options(broker, state_dir)) as agent:
            for i in range(3):
                await agent.publish("acct.1", {"i": i})
            assert [e.ver for e in await agent.read("acct.1")] == [1, 2, 3]
            assert (await agent.replay(from_seq=2)).last == 3
            assert await agent.load_snapshot("s") is None
            await agent.save_snapshot("s", b"state", 3)
            assert (await agent.load_snapshot("s")).data == b"state"
            await agent.flush(5)
            assert agent.stats().published == 3
    run(main())


def test_closing_with_a_deferred_handler_redelivers_its_event(broker, state_dir):
    async def first():
        agent = herald.AsyncAgent("c", **agent_options(broker, state_dir))
        for i in range(3):
            await agent.publish("c.%d" % i, b"")
        started = asyncio.Event()

        async def stuck(event):
            if event.seq == 2:
                started.set()
                await asyncio.sleep(3600)

        agent.subscribe("c.", stuck, name="c")
        await asyncio.wait_for(started.wait(), 20)
        agent.close()

    async def second():
        seen = []
        async with herald.AsyncAgent("c", **agent_options(broker, state_dir)) as agent:
            agent.subscribe("c.", lambda e: seen.append((e.seq, e.redelivered)), name="c")
            await until(lambda: len(seen) == 2)
        return seen

    run(first())
    assert run(second()) == [(2, True), (3, False)]

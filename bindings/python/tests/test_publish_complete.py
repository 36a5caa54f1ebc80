"""test_publish_complete - every publish_async future gets the truth

Issue 11 item 9: publish_async x 50, flush(), close() in fresh agents: every
future must be resolved by the time close() returns, with the broker's
answer (no false TimeoutError "queued in the outbox" for an event that was
stored), and its ``id`` -- known as soon as publish_async returns -- must be
the id of the event stored at its seq.  And when the broker never answered,
the TimeoutError is true: the next agent on the directory sends the event.
"""

import asyncio
import uuid

import herald
from conftest import free_port

ROUNDS = 12
PER_ROUND = 50


def _stored(broker, state_dir):
    """{seq: id} of the whole log, read through an agent on state_dir."""
    with herald.Agent("reader", state_dir=state_dir, api=broker.api,
                      fanout=broker.fanout) as agent:
        agent.flush(20)
        return {e.seq: e.id for e in agent.replay(timeout=20)}


def test_flush_then_close_resolves_every_future_with_its_ack(broker, state_dir):
    futures = []
    for round_ in range(ROUNDS):
        agent = herald.Agent("pub", state_dir=state_dir, api=broker.api,
                             fanout=broker.fanout, heartbeat=0.2)
        mine = [agent.publish_async("r%d.%d" % (round_, i % 7), b"x")
                for i in range(PER_ROUND)]
        assert all(isinstance(f.id, uuid.UUID) for f in mine)
        agent.flush(20)
        resolved = sum(f.done() for f in mine)
        agent.close()
        assert resolved == PER_ROUND, "round %d: flush returned with %d of %d futures " \
            "resolved" % (round_, resolved, PER_ROUND)
        futures += mine
    wrong = [f.exception(timeout=0) for f in futures if f.exception(timeout=0)]
    assert not wrong, "%d of %d futures failed, e.g. %r" % (len(wrong), len(futures),
                                                             wrong[0])
    stored = _stored(broker, state_dir)
    assert len(stored) == ROUNDS * PER_ROUND
    for future in futures:
        published = future.result(timeout=0)
        assert published.id == future.id
        assert stored[published.seq] == future.id


def test_asyncio_flush_then_close_resolves_every_future(broker, state_dir):
    async def main():
        futures = []
        for round_ in range(ROUNDS):
            agent = herald.AsyncAgent("apub", state_dir=state_dir, api=broker.api,
                                      fanout=broker.fanout, heartbeat=0.2)
            mine = [agent.publish("a%d.%d" % (round_, i % 7), b"x")
                    for i in range(PER_ROUND)]
            await agent.flush(20)
            resolved = sum(f.done() for f in mine)
            agent.close()
            assert resolved == PER_ROUND, "round %d: %d of %d futures resolved after " \
                "flush" % (round_, resolved, PER_ROUND)
            futures += mine
        return futures
    futures = asyncio.run(main())
    failed = [f.exception() for f in futures if f.exception()]
    assert not failed, "%d failed, e.g. %r" % (len(failed), failed[0])
    stored = _stored(broker, state_dir)
    assert len(stored) == ROUNDS * PER_ROUND
    for future in futures:
        assert stored[future.result().seq] == future.id == future.result().id


def test_close_without_an_answer_fails_futures_truthfully(broker, state_dir):
    agent = herald.Agent("down", state_dir=state_dir,
                         api="tcp://127.0.0.1:%d" % free_port(),
                         fanout="tcp://127.0.0.1:%d" % free_port())
    futures = [agent.publish_async("q.%d" % i, b"queued") for i in range(20)]
    agent.close()
    for future in futures:
        assert future.done()
        exc = future.exception(timeout=0)
        assert isinstance(exc, herald.TimeoutError), repr(exc)
        assert "queued in the outbox" in str(exc)
        assert exc.id == future.id
    # ... and true: the next agent on the directory sends them, same ids
    stored = _stored(broker, state_dir)
    assert sorted(stored) == list(range(1, 21))
    assert [stored[seq] for seq in sorted(stored)] == [f.id for f in futures]

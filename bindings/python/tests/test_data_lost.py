"""A broker that lost events it had stored: DataLostError through every
error path (on_error, the events() iterator, aevents()).

The broker is scripted here (a ROUTER and a PUB speaking HWP/1 with
pyzmq and msgpack), as tests/test_herald_agent_lineage.c does in C, so
that a loss can be made exactly: the log cut after seq N, the lineage
raised, the loss listed in WELCOME, new events at the seqs after N.
"""

import asyncio
import os
import threading
import time

import msgpack
import pytest
import zmq

import herald

from conftest import wait_for


class FakeBroker:
    """Answers HELLO and REPLAY from a log in memory; sends $hb on demand."""

    def __init__(self):
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.pub = self.ctx.socket(zmq.PUB)
        self.router.linger = self.pub.linger = 0
        api = self.router.bind_to_random_port("tcp://127.0.0.1")
        fanout = self.pub.bind_to_random_port("tcp://127.0.0.1")
        self.api = "tcp://127.0.0.1:%d" % api
        self.fanout = "tcp://127.0.0.1:%d" % fanout
        self.log = []                   # envelopes, seq = index + 1
        self.lineage = 0
        self.losses = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def append(self, topic="d.1"):
        with self.lock:
            seq = len(self.log) + 1
            event = {"id": os.urandom(16), "topic": topic, "seq": seq, "ver": seq,
                     "ts": seq * 1000, "data": b"x"}
            self.log.append(msgpack.packb(event, use_bin_type=True))
            return seq

    def lose_after(self, n):
        with self.lock:
            del self.log[n:]
            self.lineage += 1
            self.losses.append({"lineage": self.lineage, "lost_after": n, "ts": 1})

    def _send(self, identity, command, body, frames=()):
        parts = [identity, command, msgpack.packb(body, use_bin_type=True)] + list(frames)
        self.router.send_multipart(parts)

    def _serve(self):
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        last_beat = 0.0
        while self.running:
            if time.monotonic() - last_beat > 0.05:
                with self.lock:
                    beat = {"head": len(self.log), "ts": 1, "node": "fake", "epoch": 1,
                            "lineage": self.lineage}
                self.pub.send_multipart([b"$hb", msgpack.packb(beat, use_bin_type=True)])
                last_beat = time.monotonic()
            if not poller.poll(10):
                continue
            identity, command, body = self.router.recv_multipart()[:3]
            request = msgpack.unpackb(body, raw=False)
            with self.lock:
                head = len(self.log)
                if command == b"HELLO":
                    self._send(identity, b"WELCOME", {
                        "rid": request["rid"], "proto": 1, "node": "fake", "head": head,
                        "fanout": self.fanout, "cluster": [self.api],
                        "lineage": self.lineage, "losses": list(self.losses)})
                elif command == b"REPLAY":
                    start = request.get("from", 1)
                    if start <= head:
                        self._send(identity, b"EVENTS", {"rid": request["rid"]},
                                   self.log[start - 1:])
                    self._send(identity, b"END", {
                        "rid": request["rid"], "last": max(head, start - 1), "head": head,
                        "reason": "done", "lineage": self.lineage})

    def close(self):
        self.running = False
        self.thread.join(5)
        self.router.close()
        self.pub.close()
        self.ctx.term()


@pytest.fixture
def fake():
    broker = FakeBroker()
    yield broker
    broker.close()


def _lose_while_subscribed(fake, seqs):
    """Ten events seen, then the broker keeps 1..6 and gets three new ones."""
    wait_for(lambda: len(seqs) >= 10, what="10 events")
    fake.lose_after(6)
    for _ in range(3):
        fake.append()


def test_on_error_gets_data_lost_error_and_the_new_events_follow(fake, tmp_path):
    errors, seqs = [], []
    with herald.Agent("lost", api=fake.api, fanout=fake.fanout, state_dir=tmp_path / "s",
                      on_error=lambda name, exc: errors.append((name, exc))) as agent:
        for _ in range(10):
            fake.append()
        agent.subscribe(None, lambda event: seqs.append(event.seq), name="g")
        _lose_while_subscribed(fake, seqs)
        wait_for(lambda: len(seqs) >= 13 and errors, what="the rewind")
        assert seqs == list(range(1, 11)) + [7, 8, 9]
        name, exc = errors[0]
        assert name == "g"
        assert isinstance(exc, herald.DataLostError)
        assert "broker lost events after seq 6 (lineage 1): rewinding subscription g " \
               "from 10 to 6" in str(exc)
        status = agent.subscription("g")
        assert status.data_lost == 1 and status.lineage == 1
        #  The rewound events are delivered during the catch-up; "live"
        #  comes when the agent's thread switches to the fanout, which may
        #  be a moment after the last of them reached the callback
        wait_for(lambda: agent.subscription("g").state == "live",
                 what=lambda: "state live (it is %r)" % agent.subscription("g").state)
        assert agent.stats().data_lost == 1


def test_the_events_iterator_raises_data_lost_error_once_and_goes_on(fake, tmp_path):
    for _ in range(10):
        fake.append()
    seqs = []
    with herald.Agent("lost", api=fake.api, fanout=fake.fanout,
                      state_dir=tmp_path / "s") as agent:
        with agent.events(name="it", timeout=10) as events:
            raised = []
            deadline = time.monotonic() + 20
            while len(seqs) < 13 and time.monotonic() < deadline:
                try:
                    for event in events:
                        seqs.append(event.seq)
                        if len(seqs) == 10:
                            fake.lose_after(6)
                            for _ in range(3):
                                fake.append()
                        if len(seqs) >= 13:
                            break
                except herald.DataLostError as exc:
                    raised.append(exc)
            assert len(raised) == 1
            assert seqs == list(range(1, 11)) + [7, 8, 9]


def test_aevents_raises_data_lost_error(fake, tmp_path):
    for _ in range(10):
        fake.append()

    async def main():
        seqs, raised = [], []
        async with herald.AsyncAgent("lost", api=fake.api, fanout=fake.fanout,
                                     state_dir=tmp_path / "s") as agent:
            stream = agent.aevents(name="ait", timeout=10)
            deadline = time.monotonic() + 20
            while len(seqs) < 13 and time.monotonic() < deadline:
                try:
                    async for event in stream:
                        seqs.append(event.seq)
                        if len(seqs) == 10:
                            fake.lose_after(6)
                            for _ in range(3):
                                fake.append()
                        if len(seqs) >= 13:
                            break
                except herald.DataLostError as exc:
                    raised.append(exc)
            await stream.aclose()
        return seqs, raised

    seqs, raised = asyncio.run(main())
    assert len(raised) == 1
    assert seqs == list(range(1, 11)) + [7, 8, 9]

"""test_damage - a subscription whose catch-up meets a damaged table file

heraldd writes a log of incompressible events into three or more table
files (idle flushes, and a restart that writes out the WAL), stops; the test flips bytes in the middle of the largest
.sst (the events column family's: the others hold ids and indexes, a few
per cent of its size) and starts it again.  Its catch-up REPLAY then ends
with ERROR `internal`: the subscription must get the events before the
damage, report herald.InternalError through on_error, keep its checkpoint
there and keep running (retrying), with stats().replay_errors counting.
"""

import os
import threading
import time

import msgpack
import pytest
import zmq

import herald
from conftest import Broker, wait_for

ROUNDS, PER_ROUND, DATA_BYTES = 3, 1200, 1000


def _status_extra(sock, rid, name):
    sock.send_multipart([b"STATUS", msgpack.packb({"rid": rid})])
    assert sock.poll(5000, zmq.POLLIN), "no STATUS reply"
    reply = msgpack.unpackb(sock.recv_multipart()[1], raw=False)
    return reply.get(name, 0)


def _wal_bytes(data_dir):
    return sum(os.path.getsize(os.path.join(data_dir, name))
               for name in os.listdir(data_dir) if name.endswith(".log"))


def _damaged_log(tmp_path):
    broker = Broker(tmp_path, "damage", ["--idle-flush-ms", "20"]).start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(broker.api)
    rid = 1
    try:
        for round_ in range(1, ROUNDS + 1):
            for _batch in range(PER_ROUND // 100):
                events = [{"id": os.urandom(16), "topic": "p.%d" % (i % 10),
                           "data": os.urandom(DATA_BYTES)} for i in range(100)]
                sock.send_multipart([b"PUBLISH", msgpack.packb({"rid": rid, "events": events},
                                                                use_bin_type=True)])
                assert sock.poll(5000, zmq.POLLIN), "no ACK"
                assert sock.recv_multipart()[0] == b"ACK"
                rid += 1
            # (on a busy machine the flush may come before the round ends)
            wait_for(lambda: _status_extra(sock, 1000 + round_, "idle_flushes") >= round_,
                     what="idle flush %d" % round_)
    finally:
        sock.close(0)
    assert broker.stop() is None, broker.log_tail()
    # Started and stopped once more: what the WAL held is written into a table
    broker.start()
    assert broker.stop() is None, broker.log_tail()
    assert _wal_bytes(broker.data_dir) < 64 * 1024
    tables = [os.path.join(broker.data_dir, name)
              for name in os.listdir(broker.data_dir) if name.endswith(".sst")]
    largest = max(tables, key=os.path.getsize)
    with open(largest, "r+b") as table:
        middle = os.path.getsize(largest) // 2
        table.seek(middle)
        damaged = bytes(b ^ 0xFF for b in table.read(16))
        table.seek(middle)
        table.write(damaged)
    return broker.start()


def test_catch_up_over_a_damaged_table_reports_internal_error_and_holds(tmp_path):
    broker = _damaged_log(tmp_path)
    errors = []
    seqs = []
    lock = threading.Lock()

    def handler(event):
        with lock:
            seqs.append(event.seq)

    agent = herald.Agent("damage", api=broker.api, fanout=broker.fanout,
                         state_dir=str(tmp_path / "state"), heartbeat=0.2,
                         on_error=lambda name, exc: errors.append((name, exc)))
    try:
        sub = agent.subscribe("p.", handler, name="audit")
        wait_for(lambda: errors, what=lambda: "on_error: %d events, %r" % (len(seqs),
                                                                        sub.status()))
        name, exc = errors[0]
        assert name == "audit"
        assert isinstance(exc, herald.InternalError), repr(exc)
        assert "Corruption" in str(exc), str(exc)
        with lock:
            delivered = list(seqs)
        assert 0 < len(delivered) < ROUNDS * PER_ROUND
        assert delivered == list(range(1, len(delivered) + 1))
        assert "seq %d:" % (len(delivered) + 1) in str(exc), str(exc)
        wait_for(lambda: agent.stats().replay_errors >= 2, what="a retry")
        time.sleep(0.5)                 # nothing more may come
        status = sub.status()
        assert status.state == "catching_up", status
        assert status.delivered_seq <= delivered[-1], status
        assert len(seqs) == len(delivered)
        assert len(errors) == 1, errors
    finally:
        agent.close()
        why = broker.stop()
        if why:
            pytest.fail(why + "\n" + broker.log_tail())

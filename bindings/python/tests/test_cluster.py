"""The agent given a cluster's nodes (api=[...]): it publishes to the leader
(following not_leader with the same ids), and moves its subscription to
another node when its node dies, missing nothing and repeating nothing.

The nodes are scripted here (a ROUTER and a PUB each, speaking HWP/1 with
pyzmq and msgpack, one log shared as a replicated log would be), as
tests/test_herald_agent_cluster.c does in C, so that a node can be made a
follower, or killed, exactly when the test says.
"""

import os
import threading
import time

import msgpack
import pytest
import zmq

import herald

from conftest import wait_for


class FakeCluster:
    """count nodes; `leader` is the index that stores PUBLISHes (the others
    answer not_leader naming it, or nil when it is None); `applied[i]` is
    how much of the log node i serves (None: all of it)."""

    def __init__(self, count):
        self.ctx = zmq.Context()
        self.nodes = []
        for index in range(count):
            router = self.ctx.socket(zmq.ROUTER)
            pub = self.ctx.socket(zmq.PUB)
            router.linger = pub.linger = 0
            api = "tcp://127.0.0.1:%d" % router.bind_to_random_port("tcp://127.0.0.1")
            fanout = "tcp://127.0.0.1:%d" % pub.bind_to_random_port("tcp://127.0.0.1")
            self.nodes.append({"name": "n%d" % index, "router": router, "pub": pub,
                               "api": api, "fanout": fanout, "dead": False,
                               "publishes": 0})
        self.leader = 0
        self.applied = [None] * count
        self.log = []                   # envelopes, seq = index + 1
        self.ids = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def apis(self):
        return [node["api"] for node in self.nodes]

    def _head(self, index):
        applied = self.applied[index]
        return len(self.log) if applied is None else min(applied, len(self.log))

    def append(self, topic="d.1", event_id=None):
        """Store an event (the leader's apply); seq."""
        seq = len(self.log) + 1
        event_id = event_id or os.urandom(16)
        event = {"id": event_id, "topic": topic, "seq": seq, "ver": seq,
                 "ts": seq * 1000, "data": b"x"}
        self.log.append(msgpack.packb(event, use_bin_type=True))
        self.ids.append(event_id)
        return seq

    def fan_out(self, index, seq):
        with self.lock:
            node = self.nodes[index]
            if not node["dead"]:
                node["pub"].send_multipart([b"d.1", self.log[seq - 1]])

    def kill(self, index):
        """Close node index's sockets (in the serving thread, which polls
        them) and wait until they are closed."""
        with self.lock:
            self.nodes[index]["dead"] = True
        wait_for(lambda: self.nodes[index]["router"].closed, what="the node closed")

    def _send(self, index, identity, command, body, frames=()):
        parts = [identity, command, msgpack.packb(body, use_bin_type=True)] + list(frames)
        self.nodes[index]["router"].send_multipart(parts)

    def _handle(self, index, identity, command, request):
        node = self.nodes[index]
        head = self._head(index)
        if command == b"HELLO":
            self._send(index, identity, b"WELCOME", {
                "rid": request["rid"], "proto": 1, "node": node["name"], "head": head,
                "fanout": node["fanout"], "cluster": self.apis, "lineage": 0})
        elif command == b"REPLAY":
            start = request.get("from", 1)
            if start <= head:
                self._send(index, identity, b"EVENTS", {"rid": request["rid"]},
                           self.log[start - 1:head])
            self._send(index, identity, b"END", {
                "rid": request["rid"], "last": max(head, start - 1), "head": head,
                "reason": "done", "lineage": 0})
        elif command == b"PUBLISH":
            node["publishes"] += 1
            if self.leader != index:
                leader = None if self.leader is None else self.nodes[self.leader]["api"]
                self._send(index, identity, b"ERROR", {
                    "rid": request["rid"], "code": "not_leader",
                    "message": "not the leader", "leader": leader})
                return
            seqs, dups = [], []
            for event in request["events"]:
                if event["id"] in self.ids:
                    seqs.append(self.ids.index(event["id"]) + 1)
                    dups.append(True)
                else:
                    seqs.append(self.append(event["topic"], event["id"]))
                    dups.append(False)
            self._send(index, identity, b"ACK", {"rid": request["rid"], "seq": seqs,
                                                 "ver": seqs, "dup": dups})

    def _serve(self):
        last_beat = 0.0
        while self.running:
            with self.lock:
                for node in self.nodes:
                    if node["dead"] and not node["router"].closed:
                        node["router"].close()
                        node["pub"].close()
                live = [(index, node) for index, node in enumerate(self.nodes)
                        if not node["dead"]]
                if time.monotonic() - last_beat > 0.03:
                    for index, node in live:
                        beat = {"head": self._head(index), "ts": 1, "node": node["name"],
                                "epoch": 1, "lineage": 0}
                        node["pub"].send_multipart([b"$hb",
                                                    msgpack.packb(beat, use_bin_type=True)])
                    last_beat = time.monotonic()
                poller = zmq.Poller()
                for index, node in live:
                    poller.register(node["router"], zmq.POLLIN)
            ready = dict(poller.poll(10)) if live else {}
            if not live:
                time.sleep(0.01)
            with self.lock:
                for index, node in live:
                    if node["dead"] or node["router"] not in ready:
                        continue
                    parts = node["router"].recv_multipart()
                    identity, command, body = parts[:3]
                    self._handle(index, identity, command,
                                 msgpack.unpackb(body, raw=False))

    def close(self):
        self.running = False
        self.thread.join(5)
        for node in self.nodes:
            node["router"].close()
            node["pub"].close()
        self.ctx.term()


@pytest.fixture
def cluster():
    nodes = FakeCluster(3)
    yield nodes
    nodes.close()


def test_publishes_follow_not_leader_to_the_leader(cluster, tmp_path):
    cluster.leader = 2
    with herald.Agent("pub", api=cluster.apis, state_dir=tmp_path / "s",
                      heartbeat=0.1) as agent:
        published = [agent.publish("d.1", b"x", timeout=10) for _ in range(5)]
        assert [p.seq for p in published] == [1, 2, 3, 4, 5]
        assert not any(p.duplicate for p in published)
        assert len(cluster.log) == 5
        assert cluster.nodes[0]["publishes"] >= 1
        stats = agent.stats()
        assert stats.node == "n2"
        assert stats.node_api == cluster.apis[2]
        assert stats.leader_redirects >= 1
        assert stats.nodes_known == 3
        assert stats.published == 5


def test_a_comma_separated_api_and_a_bad_list(cluster, tmp_path):
    with herald.Agent("pub", api=",".join(cluster.apis), state_dir=tmp_path / "s",
                      heartbeat=0.1) as agent:
        assert agent.publish("d.1", b"x", timeout=10).seq == 1
    with pytest.raises(ValueError):
        herald.Agent("pub", api=[cluster.apis[0], "a,b"], state_dir=tmp_path / "t")
    with pytest.raises(herald.HeraldError):
        herald.Agent("pub", api=cluster.apis[0] + ",", state_dir=tmp_path / "u")


def test_a_subscription_moves_when_its_node_dies(cluster, tmp_path):
    """Node 0 serves the agent, fans out 1..6 of 10 and dies; the agent moves
    on, replays 7..10 there, and takes 11.. live from its new node."""
    seqs = []
    with herald.Agent("sub", api=cluster.apis, state_dir=tmp_path / "s",
                      heartbeat=0.1) as agent:
        agent.subscribe(None, lambda event: seqs.append(event.seq), name="g")
        wait_for(lambda: agent.subscription("g").state == "live", what="live")
        with cluster.lock:
            for _ in range(10):
                cluster.append()
            cluster.applied[0] = 6
        for seq in range(1, 7):
            cluster.fan_out(0, seq)
        wait_for(lambda: len(seqs) >= 6, what="6 events")
        cluster.kill(0)
        wait_for(lambda: agent.stats().node not in ("", "n0"), what="a move")
        wait_for(lambda: len(seqs) >= 10, what="10 events")
        with cluster.lock:
            cluster.append()
            cluster.append()
        for index in (1, 2):
            cluster.fan_out(index, 11)
            cluster.fan_out(index, 12)
        wait_for(lambda: len(seqs) >= 12, what="12 events")
        time.sleep(0.3)                 # a duplicate would show now
        assert seqs == list(range(1, 13))
        assert agent.stats().failovers >= 1
        assert agent.subscription("g").delivered_seq == 12


def test_the_cli_takes_the_list_and_publishes_to_the_leader(cluster):
    """herald --endpoint E1,E2,E3 pub: the first node is a follower naming
    node 2; the events are stored once there, printed once, not duplicates."""
    import subprocess
    tool = os.path.join(os.environ.get("HERALD_BUILDDIR", "."), "tools", "herald")
    if not os.path.exists(tool):
        pytest.skip("no tools/herald in the build tree")
    cluster.leader = 2
    run = subprocess.run([tool, "--endpoint", ",".join(cluster.apis), "pub", "d.1", "x"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and '"seq":1' in lines[0] and '"dup":false' in lines[0], lines
    assert len(cluster.log) == 1
    assert cluster.nodes[0]["publishes"] == 1
    # With no leader anywhere, it gives up after its moves, with the error
    cluster.leader = None
    run = subprocess.run([tool, "--endpoint", ",".join(cluster.apis), "--timeout", "2000",
                          "pub", "d.1", "x"], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "not_leader" in run.stderr, run.stderr


# -- a real cluster ---------------------------------------------------------

class RealCluster:
    """Three heraldd nodes on 127.0.0.1 (short election timeouts), all
    started at once (they bootstrap together)."""

    def __init__(self, tmp_path, count=3):
        from conftest import BUILDDIR, free_port
        import subprocess
        ports = set()
        while len(ports) < count * 3:
            ports.add(free_port())
        ports = sorted(ports)
        self.apis = ["tcp://127.0.0.1:%d" % ports[i * 3] for i in range(count)]
        fanouts = ["tcp://127.0.0.1:%d" % ports[i * 3 + 1] for i in range(count)]
        rafts = ["127.0.0.1:%d" % ports[i * 3 + 2] for i in range(count)]
        peers = []
        for i in range(count):
            peers += ["--peer", "n%d,%s,%s,%s" % (i + 1, rafts[i], self.apis[i], fanouts[i])]
        self.procs = []
        self.logs = []
        for i in range(count):
            log_path = str(tmp_path / ("heraldd-n%d.log" % (i + 1)))
            self.logs.append(log_path)
            argv = [str(BUILDDIR / "broker" / "heraldd"), "--data-dir",
                    str(tmp_path / ("data-n%d" % (i + 1))), "--node", "n%d" % (i + 1),
                    "--heartbeat-ms", "200", "--cluster-state", "new",
                    "--election-ms", "400", "--raft-heartbeat-ms", "40"] + peers
            with open(log_path, "ab") as log:
                self.procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                                   stdout=log, stderr=subprocess.STDOUT))

    def status(self, index, timeout=0.5):
        ctx = zmq.Context.instance()
        probe = ctx.socket(zmq.DEALER)
        probe.setsockopt(zmq.LINGER, 0)
        probe.connect(self.apis[index])
        try:
            probe.send_multipart([b"STATUS", msgpack.packb({"rid": 1})])
            if probe.poll(int(timeout * 1000), zmq.POLLIN):
                parts = probe.recv_multipart()
                if parts[0] == b"STATUS":
                    return msgpack.unpackb(parts[1], raw=False)
            return None
        finally:
            probe.close(0)

    def leader(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, proc in enumerate(self.procs):
                if proc.poll() is None:
                    status = self.status(index)
                    if status and status.get("role") == "leader":
                        return index
            time.sleep(0.05)
        return None

    def kill(self, index):
        self.procs[index].kill()
        self.procs[index].wait(10)

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    def log_tail(self):
        out = []
        for path in self.logs:
            with open(path, "rb") as f:
                out.append(path + ":\n" + "\n".join(
                    f.read().decode("utf-8", "replace").splitlines()[-15:]))
        return "\n".join(out)


def test_a_real_cluster_through_a_leader_kill_9(tmp_path):
    """A publisher (its list starting at a follower) and a subscriber (its
    list starting at the leader, the node killed): every publish resolved
    once, at distinct seqs; every event handled once, in order."""
    from conftest import BUILDDIR
    if not (BUILDDIR / "broker" / "heraldd").exists():
        pytest.skip("no heraldd in the build tree")
    nodes = RealCluster(tmp_path)
    try:
        leader = nodes.leader()
        assert leader is not None, "no leader\n" + nodes.log_tail()
        follower_first = [nodes.apis[(leader + 1 + i) % 3] for i in range(3)]
        leader_first = [nodes.apis[(leader + i) % 3] for i in range(3)]
        seqs = []
        with herald.Agent("rpub", api=follower_first, state_dir=tmp_path / "p",
                          heartbeat=0.2, timeout=20) as publisher, \
                herald.Agent("rsub", api=leader_first, state_dir=tmp_path / "s",
                             heartbeat=0.2) as subscriber:
            subscriber.subscribe(None, lambda event: seqs.append(event.seq), name="all")
            futures = []
            for index in range(300):
                futures.append(publisher.publish_async("c.1", b"x"))
                if index == 100:
                    wait_for(lambda: sum(f.done() for f in futures) >= 10, what="10 ACKs")
                    nodes.kill(leader)
                if index % 25 == 0:
                    time.sleep(0.005)
            publisher.flush(60)
            published = [f.result(0) for f in futures]
            assert len({p.seq for p in published}) == 300
            wait_for(lambda: len(seqs) >= 300, timeout=60, what="300 events handled")
            time.sleep(0.3)             # a duplicate would show now
            assert seqs == sorted(seqs) and len(set(seqs)) == 300 == len(seqs)
            assert set(seqs) == {p.seq for p in published}
            assert publisher.stats().failovers >= 1
            assert subscriber.stats().failovers >= 1
            assert subscriber.stats().node_api != nodes.apis[leader]
    finally:
        nodes.close()

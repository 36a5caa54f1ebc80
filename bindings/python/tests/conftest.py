"""conftest - a real heraldd per test, and the package from this tree

The package is imported from bindings/python (this file's parent's
parent), and libherald from the build tree: $HERALD_BUILDDIR/.libs (make
check sets HERALD_BUILDDIR; tests/python/conftest.py does the same for
heraldd).  Each broker gets ports chosen at run time and a data directory
under the test's tmp_path; it is ready once STATUS answers, and must exit
0 on SIGTERM at teardown.
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import msgpack
import pytest
import zmq

HERE = pathlib.Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent
SOURCE_ROOT = PACKAGE_ROOT.parent.parent
sys.path.insert(0, str(PACKAGE_ROOT))
os.environ.setdefault("HERALD_BUILDDIR", str(SOURCE_ROOT))
BUILDDIR = pathlib.Path(os.environ["HERALD_BUILDDIR"]).resolve()


def free_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


class Broker:
    """heraldd on free ports; start() again reuses them (an agent keeps its
    endpoints across a broker restart)."""

    def __init__(self, tmp_path, name, flags=()):
        self.data_dir = str(tmp_path / ("data-" + name))
        self.log_path = str(tmp_path / ("heraldd-%s.log" % name))
        self.flags = list(flags)
        self.proc = None
        self.api_port = self.fanout_port = None

    def start(self, timeout=10.0):
        for _attempt in range(3):
            if self.api_port is None or _attempt:
                self.api_port, self.fanout_port = free_port(), free_port()
                while self.fanout_port == self.api_port:
                    self.fanout_port = free_port()
            argv = [str(BUILDDIR / "broker" / "heraldd"), "--data-dir", self.data_dir,
                    "--api", self.api, "--fanout", self.fanout,
                    "--durability", "async", "--heartbeat-ms", "200"] + self.flags
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT)
            if self._ready(timeout):
                return self
            self.kill()
        pytest.fail("heraldd did not start:\n" + self.log_tail())

    @property
    def api(self):
        return "tcp://127.0.0.1:%d" % self.api_port

    @property
    def fanout(self):
        return "tcp://127.0.0.1:%d" % self.fanout_port

    def _ready(self, timeout):
        ctx = zmq.Context.instance()
        probe = ctx.socket(zmq.DEALER)
        probe.setsockopt(zmq.LINGER, 0)
        probe.connect(self.api)
        try:
            deadline = time.monotonic() + timeout
            rid = 1
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                probe.send_multipart([b"STATUS", msgpack.packb({"rid": rid})])
                if probe.poll(250, zmq.POLLIN):
                    if probe.recv_multipart()[0] == b"STATUS":
                        return True
                rid += 1
            return False
        finally:
            probe.close(0)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self):
        """SIGTERM; returns why it was not clean, or None."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            why = "heraldd died during the test (status %s)" % self.proc.returncode
            self.proc = None
            return why
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
            return "heraldd ignored SIGTERM"
        self.proc = None
        return None if status == 0 else "heraldd exited %s" % status

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path, "0").start()
    yield b
    why = b.stop()
    if why:
        pytest.fail(why + "\n" + b.log_tail())


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    path.mkdir()
    return str(path)


@pytest.fixture
def make_agent(broker, state_dir):
    """make_agent(**options) -> an Agent on the test's broker (closed at
    teardown); state_dir= may name another directory."""
    import herald
    agents = []

    def make(service="test", **options):
        options.setdefault("state_dir", state_dir)
        options.setdefault("api", broker.api)
        options.setdefault("fanout", broker.fanout)
        options.setdefault("heartbeat", 0.2)
        agent = herald.Agent(service, **options)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def wait_for(predicate, timeout=20.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    pytest.fail("timed out waiting for %s" % (what() if callable(what) else what))

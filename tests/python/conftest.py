"""conftest - start a real heraldd for each conformance test

The broker is found at $HERALD_BUILDDIR/broker/heraldd (make check sets
HERALD_BUILDDIR) or at ../../broker/heraldd relative to this file.  Each
broker gets ports chosen at run time (bind 127.0.0.1:0, read the port,
close) and a data directory under the test's tmp_path.  It counts as ready
once STATUS answers (10 s at most).  At teardown it gets SIGTERM and must
exit 0 within 10 s (SIGKILL is the last resort, and a failure): a broker
that crashed or hung on a test's input fails that test.

Everything here speaks raw ZeroMQ frames; MessagePack decoding and the
contract's checks live in test_conformance.py.
"""

import os
import pathlib
import signal
import socket
import subprocess
import time

import msgpack
import pytest
import zmq

HERE = pathlib.Path(__file__).resolve().parent
READY_SECONDS = 10
STOP_SECONDS = 10
DEFAULT_TIMEOUT_MS = 3000


def heraldd_path():
    builddir = os.environ.get("HERALD_BUILDDIR")
    if builddir:
        return str(pathlib.Path(builddir) / "broker" / "heraldd")
    return str((HERE / ".." / ".." / "broker" / "heraldd").resolve())


def free_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


class Reply:
    """One message received on a DEALER: command, body bytes, all frames."""

    def __init__(self, frames):
        self.frames = frames
        self.command = frames[0].decode("ascii", "replace") if frames else ""
        self.body = frames[1] if len(frames) > 1 else None

    def __repr__(self):
        return "Reply(%r)" % (self.frames[:4],)


class Client:
    """A DEALER on the broker's api, as a third-party client would use."""

    def __init__(self, ctx, endpoint, timeout_ms=DEFAULT_TIMEOUT_MS):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        self.sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
        self.sock.connect(endpoint)
        self.timeout_ms = timeout_ms

    def send_frames(self, frames):
        self.sock.send_multipart(frames)

    def send(self, command, body):
        """body: an object to pack, or bytes sent as they are."""
        if not isinstance(body, (bytes, bytearray)):
            body = pack(body)
        self.send_frames([command.encode("ascii"), body])

    def recv(self, timeout_ms=None):
        """The next message; fails the test on timeout (never hangs)."""
        timeout_ms = self.timeout_ms if timeout_ms is None else timeout_ms
        if not self.sock.poll(timeout_ms, zmq.POLLIN):
            pytest.fail("no reply from the broker within %d ms" % timeout_ms)
        return Reply(self.sock.recv_multipart())

    def silent(self, ms):
        """True when nothing arrives within ms; else the message that did."""
        if self.sock.poll(ms, zmq.POLLIN):
            return Reply(self.sock.recv_multipart())
        return True

    def request(self, command, body, timeout_ms=None):
        self.send(command, body)
        return self.recv(timeout_ms)

    def close(self):
        self.sock.close(0)


class Broker:
    def __init__(self, ctx, tmp_path, flags, data_dir, name):
        self.ctx = ctx
        self.flags = list(flags)
        self.data_dir = str(data_dir)
        self.log_path = str(tmp_path / ("%s.log" % name))
        self.proc = None
        self.log = None
        self.sockets = []
        self.returncode = None

    # -- lifecycle -------------------------------------------------------
    def start(self):
        last_error = None
        for _attempt in range(3):
            self.api_port, self.fanout_port = free_port(), free_port()
            while self.fanout_port == self.api_port:
                self.fanout_port = free_port()
            self.api = "tcp://127.0.0.1:%d" % self.api_port
            self.fanout = "tcp://127.0.0.1:%d" % self.fanout_port
            argv = [heraldd_path(), "--data-dir", self.data_dir,
                    "--api", self.api, "--fanout", self.fanout] + self.flags
            self.log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=subprocess.STDOUT)
            ok, last_error = self._wait_ready()
            if ok:
                self.returncode = None
                return self
            self._kill()
            # a port taken between free_port() and the bind: try new ones
        pytest.fail("heraldd did not start: %s\n%s" % (last_error, self.log_tail()))

    def _wait_ready(self):
        deadline = time.monotonic() + READY_SECONDS
        probe = self.ctx.socket(zmq.DEALER)
        probe.setsockopt(zmq.LINGER, 0)
        probe.connect(self.api)
        try:
            rid = 1
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False, "exited with %s" % self.proc.returncode
                probe.send_multipart([b"STATUS", pack({"rid": rid})])
                if probe.poll(250, zmq.POLLIN):
                    frames = probe.recv_multipart()
                    if frames and frames[0] == b"STATUS":
                        return True, None
                rid += 1
            return False, "STATUS did not answer within %d s" % READY_SECONDS
        finally:
            probe.close(0)

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_SECONDS)
        if self.log:
            self.log.close()
            self.log = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, wait; SIGKILL as the last resort.  Returns
        (exit status, why) where why is None on a clean stop."""
        for sock in self.sockets:
            sock.close(0)
        self.sockets = []
        if self.proc is None:
            return 0, None
        why = None
        if self.proc.poll() is not None:
            why = "heraldd had died before the test ended (status %s)" % self.proc.returncode
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_SECONDS)
                why = "heraldd ignored SIGTERM for %d s (killed)" % STOP_SECONDS
        self.returncode = self.proc.returncode
        if why is None and self.returncode != 0:
            why = "heraldd exited %s after SIGTERM" % self.returncode
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None
        return self.returncode, why

    def restart(self, *flags):
        status, why = self.stop()
        assert why is None, why + "\n" + self.log_tail()
        if flags:
            self.flags = list(flags)
        return self.start()

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "--- heraldd log ---\n" + "\n".join(text.splitlines()[-lines:])

    # -- sockets ---------------------------------------------------------
    def client(self, timeout_ms=DEFAULT_TIMEOUT_MS):
        c = Client(self.ctx, self.api, timeout_ms)
        self.sockets.append(c.sock)
        return c

    def sub(self, *prefixes, timeout_ms=DEFAULT_TIMEOUT_MS):
        """A SUB on fanout, subscribed to each prefix (bytes or str)."""
        s = self.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, timeout_ms)
        for p in prefixes:
            s.setsockopt(zmq.SUBSCRIBE, p.encode() if isinstance(p, str) else p)
        s.connect(self.fanout)
        self.sockets.append(s)
        return s


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def broker_factory(zctx, tmp_path):
    """start(*flags, data_dir=None) -> Broker.  Every broker started is
    stopped at teardown, and must have survived the test and exit 0."""
    started = []

    def start(*flags, data_dir=None):
        name = "heraldd-%d" % len(started)
        if data_dir is None:
            data_dir = tmp_path / ("data-%d" % len(started))
        b = Broker(zctx, tmp_path, flags, data_dir, name)
        started.append(b)
        return b.start()

    yield start
    problems = []
    for b in started:
        status, why = b.stop()
        if why:
            problems.append(why + "\n" + b.log_tail())
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def broker(broker_factory):
    return broker_factory()

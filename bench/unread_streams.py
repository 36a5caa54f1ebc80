#!/usr/bin/python3
"""unread_streams - broker memory held for clients that never read

Starts one heraldd (durability async) on free ports, fills a log of
--events events of --payload bytes, then opens --replays REPLAYs with
credit 1,000,000 on each of --clients DEALER connections and never reads
from them.  It samples heraldd's VmRSS (/proc/PID/status) until it stops
growing, closes the clients, and samples again until it stops falling.
STATUS counters (stream_bytes, streams, streams_waiting_bytes where the
broker has them) are printed beside each figure.

    /usr/bin/python3 bench/unread_streams.py [--events N] [--clients N]
        [--replays N] [--payload B] [-- HERALDD FLAGS...]

e.g. `... -- --client-max-bytes 4194304` to try another bound.  Prints
figures; never fails on one.  HERALD_BUILDDIR (default: the tree this file
is in) locates broker/heraldd.  Needs python3-zmq and python3-msgpack.
"""

import argparse
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

TOP = pathlib.Path(__file__).resolve().parent.parent
BUILDDIR = pathlib.Path(os.environ.get("HERALD_BUILDDIR", str(TOP))).resolve()
MIB = 1024.0 * 1024.0


def free_port():
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Client:
    """One DEALER on the api socket."""

    def __init__(self, ctx, api):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(api)
        self.rid = 0

    def send(self, command, body):
        self.rid += 1
        body["rid"] = self.rid
        self.sock.send_multipart([command, msgpack.packb(body, use_bin_type=True)])
        return self.rid

    def recv(self, timeout_ms=10000):
        if not self.sock.poll(timeout_ms):
            raise RuntimeError("no reply in %d ms" % timeout_ms)
        frames = self.sock.recv_multipart()
        return frames[0], msgpack.unpackb(frames[1], raw=False)

    def status(self):
        self.send(b"STATUS", {})
        while True:
            command, body = self.recv()
            if command == b"STATUS":
                return body

    def close(self):
        self.sock.close(0)


def fill(client, events, payload):
    """Publish events in batches of 1000, 8 requests in flight."""
    data = os.urandom(payload)
    sent = acked = 0
    nonce = os.urandom(8)
    inflight = 0
    while acked < events:
        while inflight < 8 and sent < events:
            batch = []
            for _ in range(min(1000, events - sent)):
                batch.append({"id": nonce + sent.to_bytes(8, "big"),
                              "topic": "bench.t%d" % (sent % 100), "data": data})
                sent += 1
            client.send(b"PUBLISH", {"events": batch})
            inflight += 1
        command, body = client.recv()
        if command != b"ACK":
            raise RuntimeError("PUBLISH refused: %r" % (body,))
        acked += len(body["seq"])
        inflight -= 1


def settle(pid, admin, label, rising, limit_s=60.0, still_s=5.0):
    """Sample RSS every 0.25 s until it has not moved by more than 1 MiB in
    still_s (or limit_s passed); print and return the last figure."""
    start = time.monotonic()
    best = rss_bytes(pid)
    best_at = start
    while time.monotonic() - start < limit_s:
        time.sleep(0.25)
        rss = rss_bytes(pid)
        moved = rss > best + MIB if rising else rss < best - MIB
        if moved:
            best, best_at = rss, time.monotonic()
        elif time.monotonic() - best_at >= still_s:
            break
    rss = rss_bytes(pid)
    status = admin.status()
    extra = " ".join("%s=%s" % (key, status[key])
                     for key in ("streams", "stream_bytes", "client_bytes_max",
                                 "streams_waiting_bytes", "streams_abandoned")
                     if key in status)
    print("%-34s RSS %7.1f MiB  (%.1f s)  %s"
          % (label, rss / MIB, time.monotonic() - start, extra), flush=True)
    return rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200000)
    parser.add_argument("--payload", type=int, default=100)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--replays", type=int, default=6)
    parser.add_argument("flags", nargs="*", help="extra heraldd flags, after --")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="herald-unread-")
    api = "tcp://127.0.0.1:%d" % free_port()
    fanout = "tcp://127.0.0.1:%d" % free_port()
    heraldd = str(BUILDDIR / "broker" / "heraldd")
    log = open(os.path.join(root, "heraldd.log"), "wb")
    broker = subprocess.Popen(
        [heraldd, "--data-dir", os.path.join(root, "data"), "--api", api,
         "--fanout", fanout, "--durability", "async", "--log-level", "warn",
         "--stream-idle-ms", "600000"] + args.flags,
        stdout=log, stderr=subprocess.STDOUT)
    ctx = zmq.Context()
    try:
        admin = Client(ctx, api)
        admin.status()
        print("heraldd %s, %d events of %d B, %d client(s) x %d unread REPLAY(s), flags %s"
              % (heraldd, args.events, args.payload, args.clients, args.replays,
                 " ".join(args.flags) or "(defaults)"), flush=True)
        fill(admin, args.events, args.payload)
        base = settle(broker.pid, admin, "log filled", True)
        clients = [Client(ctx, api) for _ in range(args.clients)]
        for client in clients:
            for _ in range(args.replays):
                client.send(b"REPLAY", {"from": 1, "credit": 1000000})
        held = settle(broker.pid, admin, "unread replays open", True)
        for client in clients:
            client.close()
        freed = settle(broker.pid, admin, "clients closed", False)
        print("held %.1f MiB over the filled log (%.1f MiB per client), "
              "%.1f MiB still held after the clients left"
              % ((held - base) / MIB, (held - base) / MIB / args.clients,
                 (freed - base) / MIB), flush=True)
        admin.close()
    finally:
        broker.terminate()
        broker.wait(30)
        ctx.term()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

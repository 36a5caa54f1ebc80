#!/usr/bin/python3
"""python_bench - the Python binding's rates beside the C agent's, in one run

Starts one heraldd (durability async) on free ports and measures, with the
herald package (bindings/python) over this tree's libherald:

  publish, Agent.publish_async     futures, pipelined through the outbox
  publish, AsyncAgent.publish      asyncio futures, pipelined
  publish, Agent.publish           one synchronous round trip at a time
  deliver, Agent handler           catch-up of a backlog into a Python handler
                                   (the agent's delivery thread)
  deliver, AsyncAgent handler      the same on the event loop (dispatch mode)
  deliver, AsyncAgent async def    each event a coroutine (deferred calls)
  deliver, Agent.events()          the iterator (a hand-over between threads)
  deliver, Agent batch handler     subscribe(batch=True): one call per batch
  deliver, batch into SQLite       a batch handler as a projection: one
                                   transaction per batch (WAL, synchronous
                                   NORMAL), the last seq stored beside
  deliver, AsyncAgent batch        the same on the event loop (one dispatch
                                   wake-up per batch)
  deliver, AsyncAgent async batch  an async def batch handler, awaited once
                                   per batch
  deliver, C batch handler         bench/batch_bench (libherald's
                                   herald_agent_subscribe_batch, no Python)
  project, SQLiteProjection        herald.projection into SQLite: a row per
                                   event, the position committed with each
                                   batch (apply_batch, and apply per event),
                                   and as a temporal projection (until_ts)
  project, PostgresProjection      the same into PostgreSQL (a private server
                                   that tests/pgserver.sh starts; skipped
                                   without one)

each delivery case as catch-up of the published backlog, and the
handler cases live too (subscribed at NOW, then min(--events, 100,000)
published by another agent: bounded by that publisher), then runs
bench/agent_bench (the C agent, its own broker) with a similar size, and
prints both.  Prints figures; never fails on one.

    /usr/bin/python3 bench/python_bench.py [--quick] [--events N] [--no-c] [--only TEXT]

HERALD_BUILDDIR (default: the tree this file is in) locates heraldd,
libherald and bench/agent_bench.
"""

import argparse
import asyncio
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TOP = pathlib.Path(__file__).resolve().parent.parent
BUILDDIR = pathlib.Path(os.environ.get("HERALD_BUILDDIR", str(TOP))).resolve()
os.environ["HERALD_BUILDDIR"] = str(BUILDDIR)
sys.path.insert(0, str(TOP / "bindings" / "python"))

import herald  # noqa: E402

PAYLOAD = b"x" * 100


def free_port():
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


class Broker:
    def __init__(self, root):
        self.api = "tcp://127.0.0.1:%d" % free_port()
        self.fanout = "tcp://127.0.0.1:%d" % free_port()
        self.log = open(os.path.join(root, "heraldd.log"), "wb")
        self.proc = subprocess.Popen(
            [str(BUILDDIR / "broker" / "heraldd"), "--data-dir", os.path.join(root, "data"),
             "--api", self.api, "--fanout", self.fanout, "--durability", "async"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()


def rate(count, seconds):
    return count / seconds if seconds > 0 else float("inf")


def agent(broker, root, name, cls=herald.Agent):
    return cls(name, api=broker.api, fanout=broker.fanout,
               state_dir=os.path.join(root, name), timeout=30)


def bench_publish_async(broker, root, count):
    with agent(broker, root, "pub-async") as a:
        start = time.perf_counter()
        #  In runs of 50,000: the outbox holds 100,000 unacknowledged events
        for first in range(0, count, 50_000):
            futures = [a.publish_async("bench.%d" % (i % 100), PAYLOAD)
                       for i in range(first, min(count, first + 50_000))]
            for f in futures:
                f.result(60)
        return rate(count, time.perf_counter() - start)


def bench_publish_asyncio(broker, root, count):
    async def main():
        async with agent(broker, root, "pub-asyncio", herald.AsyncAgent) as a:
            start = time.perf_counter()
            futures = [a.publish("bench.%d" % (i % 100), PAYLOAD) for i in range(count)]
            await asyncio.gather(*futures)
            return rate(count, time.perf_counter() - start)
    return asyncio.run(main())


def bench_publish_sync(broker, root, count):
    with agent(broker, root, "pub-sync") as a:
        start = time.perf_counter()
        for i in range(count):
            a.publish("sync.%d" % (i % 100), PAYLOAD)
        return rate(count, time.perf_counter() - start)


def wait_until(predicate, limit=300):
    deadline = time.monotonic() + limit
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)


def bench_deliver_thread(broker, root, count):
    with agent(broker, root, "deliver-thread") as a:
        seen = [0]

        def handler(event):
            seen[0] += 1

        start = time.perf_counter()
        a.subscribe("bench.", handler, name="b")
        wait_until(lambda: seen[0] >= count)
        return rate(seen[0], time.perf_counter() - start)


def bench_deliver_asyncio(broker, root, count, coroutine):
    async def main():
        async with agent(broker, root, "deliver-aio-%d" % coroutine,
                         herald.AsyncAgent) as a:
            seen = [0]
            done = asyncio.Event()

            def handler(event):
                seen[0] += 1
                if seen[0] >= count:
                    done.set()

            async def async_handler(event):
                handler(event)

            start = time.perf_counter()
            a.subscribe("bench.", async_handler if coroutine else handler, name="b")
            await asyncio.wait_for(done.wait(), 300)
            return rate(seen[0], time.perf_counter() - start)
    return asyncio.run(main())


def bench_iterator(broker, root, count):
    with agent(broker, root, "deliver-iter") as a:
        seen = 0
        start = time.perf_counter()
        with a.events("bench.", name="b") as events:
            for _event in events:
                seen += 1
                if seen >= count:
                    break
        return rate(seen, time.perf_counter() - start)


def bench_deliver_batch(broker, root, count):
    with agent(broker, root, "deliver-batch") as a:
        seen = [0]

        def handler(events):
            seen[0] += len(events)

        start = time.perf_counter()
        a.subscribe("bench.", handler, name="b", batch=True)
        wait_until(lambda: seen[0] >= count)
        return rate(seen[0], time.perf_counter() - start)


def bench_deliver_sqlite(broker, root, count):
    """A batch handler as a projection: each batch in one SQLite transaction
    (a row per event, and the last seq applied beside them), on a file in
    WAL mode with synchronous=NORMAL."""
    import sqlite3
    db = sqlite3.connect(os.path.join(root, "projection.db"), isolation_level=None,
                         check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, topic TEXT, data BLOB)")
    db.execute("CREATE TABLE position (id INTEGER PRIMARY KEY, seq INTEGER)")
    db.execute("INSERT INTO position VALUES (1, 0)")
    with agent(broker, root, "deliver-sqlite") as a:
        seen = [0]

        def project(events):
            db.execute("BEGIN")
            db.executemany("INSERT INTO events VALUES (?, ?, ?)",
                           [(e.seq, e.topic, e.data) for e in events])
            db.execute("UPDATE position SET seq = ? WHERE id = 1", (events[-1].seq,))
            db.execute("COMMIT")
            seen[0] += len(events)

        start = time.perf_counter()
        a.subscribe("bench.", project, name="b", batch=True)
        wait_until(lambda: seen[0] >= count)
        elapsed = time.perf_counter() - start
    db.close()
    return rate(seen[0], elapsed)


def _projection_setup(db):
    db.execute("CREATE TABLE IF NOT EXISTS events (seq BIGINT PRIMARY KEY, topic TEXT, "
               "data %s)" % ("BYTEA" if hasattr(db, "connection") else "BLOB"))


def _projection_apply_batch(db, events):
    rows = [(e.seq, e.topic, e.data) for e in events]
    if hasattr(db, "connection"):               # psycopg2: one statement for the batch
        import psycopg2.extras
        psycopg2.extras.execute_values(db, "INSERT INTO events VALUES %s", rows,
                                       page_size=len(rows))
    else:
        db.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)


def _projection_apply(db, event):
    mark = "%s" if hasattr(db, "connection") else "?"
    db.execute("INSERT INTO events VALUES (%s, %s, %s)" % (mark, mark, mark),
               (event.seq, event.topic, event.data))


def bench_projection(broker, root, count, make, per_event=False, until_ts=None):
    """herald.projection into a table of one row per event (the seq, the
    topic, the data), catching up with the first `count` bench. events (seq
    1..count): from start() to the position at seq `count`, the position
    committed with each batch.  Temporal with until_ts (the ts of seq
    count): start() returns when done."""
    name = "deliver-projection-%d" % len(os.listdir(root))
    with agent(broker, root, name) as a:
        functions = dict(apply=_projection_apply) if per_event \
            else dict(apply_batch=_projection_apply_batch)
        with make(a, "bench", prefixes="bench.", setup=_projection_setup,
                  until_ts=until_ts, **functions) as projection:
            start = time.perf_counter()
            projection.start(timeout=30)
            status = projection.wait(count, 300)
            elapsed = time.perf_counter() - start
    return rate(status.applied, elapsed)


def sqlite_projection(root):
    def make(a, name, **options):
        path = os.path.join(root, "projection-%d.db" % len(os.listdir(root)))
        return herald.SQLiteProjection(a, name, path, **options)
    return make


class PgServer:
    """tests/pgserver.sh's private PostgreSQL server (None when it cannot
    start: no PostgreSQL here)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="herald-bench-pg-", dir="/tmp")
        self.script = str(TOP / "tests" / "pgserver.sh")
        done = subprocess.run([self.script, "start", self.dir], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=120)
        out = done.stdout.decode(errors="replace").strip()
        self.conninfo = out.splitlines()[-1] if done.returncode == 0 and out else None
        self.error = None if self.conninfo else out[-300:]
        self.databases = 0

    def make(self, a, name, **options):
        import psycopg2
        self.databases += 1
        database = "bench_%d" % self.databases
        conn = psycopg2.connect(self.conninfo)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE %s" % database)
        conn.close()
        dsn = re.sub(r"dbname=\S+", "dbname=" + database, self.conninfo)
        return herald.PostgresProjection(a, name, dsn, **options)

    def stop(self):
        subprocess.run([self.script, "stop", self.dir], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def ts_of(broker, root, seq):
    with agent(broker, root, "ts-of") as a:
        return a.replay(from_seq=seq, to_seq=seq)[0].ts


def bench_deliver_asyncio_batch(broker, root, count, coroutine):
    async def main():
        async with agent(broker, root, "deliver-aio-batch-%d" % coroutine,
                         herald.AsyncAgent) as a:
            seen = [0]
            done = asyncio.Event()

            def handler(events):
                seen[0] += len(events)
                if seen[0] >= count:
                    done.set()

            async def async_handler(events):
                handler(events)

            start = time.perf_counter()
            a.subscribe("bench.", async_handler if coroutine else handler, name="b",
                        batch=True)
            await asyncio.wait_for(done.wait(), 300)
            return rate(seen[0], time.perf_counter() - start)
    return asyncio.run(main())


_live_serial = [0]


def bench_live(broker, root, count, kind):
    """Live: the subscriber first (at NOW), then count events published by
    another agent as fast as publish_async goes; the rate is from the
    first publish to the last event handled (bounded by the publisher)."""
    _live_serial[0] += 1
    prefix = "live%d." % _live_serial[0]
    seen = [0]

    def one(event):
        seen[0] += 1

    def many(events):
        seen[0] += len(events)

    def publish_all():
        with agent(broker, root, "live-pub-%d" % _live_serial[0]) as pub:
            start = time.perf_counter()
            for i in range(count):
                pub.publish_async("%s%d" % (prefix, i % 100), PAYLOAD)
            pub.flush(300)
            return start

    if kind in ("aio", "aio-batch"):
        async def main():
            async with agent(broker, root, "live-%s-%d" % (kind, _live_serial[0]),
                             herald.AsyncAgent) as a:
                a.subscribe(prefix, many if kind == "aio-batch" else one, name="l",
                            start=herald.NOW, batch=kind == "aio-batch")
                loop = asyncio.get_running_loop()
                start = await loop.run_in_executor(None, publish_all)
                for _ in range(300 * 200):
                    if seen[0] >= count:
                        break
                    await asyncio.sleep(0.005)
                return rate(seen[0], time.perf_counter() - start)
        return asyncio.run(main())
    with agent(broker, root, "live-%s-%d" % (kind, _live_serial[0])) as a:
        a.subscribe(prefix, many if kind == "batch" else one, name="l", start=herald.NOW,
                    batch=kind == "batch")
        start = publish_all()
        wait_until(lambda: seen[0] >= count)
        return rate(seen[0], time.perf_counter() - start)


def run_c_batch_bench(broker, count):
    """bench/batch_bench: the C agent with a trivial batch handler and a
    trivial per-event one, catch-up of the backlog on this broker."""
    binary = BUILDDIR / "bench" / "batch_bench"
    if not binary.exists():
        raise RuntimeError("bench/batch_bench is not built")
    proc = subprocess.run([str(binary), broker.api, broker.fanout, str(count)],
                          capture_output=True, timeout=600)
    figures = {}
    for line in proc.stdout.decode().splitlines():
        name, _, value = line.partition(" ")
        figures[name] = float(value)
    if "batch" not in figures:
        raise RuntimeError(proc.stderr.decode("utf-8", "replace").strip())
    return figures


def run_c_bench(count, quick):
    binary = BUILDDIR / "bench" / "agent_bench"
    if not binary.exists():
        return "bench/agent_bench is not built"
    argv = [str(binary), "--backlog", str(count), "--publishes", str(count)]
    if quick:
        argv.append("--quick")
    proc = subprocess.run(argv, capture_output=True, timeout=1800,
                          env=dict(os.environ, HERALD_BUILDDIR=str(BUILDDIR)))
    return proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5,000 events")
    parser.add_argument("--events", type=int, default=100_000,
                        help="events per case (default 100,000)")
    parser.add_argument("--no-c", action="store_true", help="skip bench/agent_bench")
    parser.add_argument("--only", metavar="TEXT", default=None,
                        help="only the cases whose label holds TEXT (e.g. Projection)")
    args = parser.parse_args()
    count = 5_000 if args.quick else args.events
    root = tempfile.mkdtemp(prefix="herald-python-bench-")
    broker = Broker(root)
    time.sleep(0.5)
    rows = []
    try:
        print("herald %s (libherald %s at %s), Python %s, %d events of %d bytes, "
              "durability async" % (herald.__version__, herald.library_version,
                                    herald.library_path, sys.version.split()[0], count,
                                    len(PAYLOAD)), flush=True)
        live = min(count, 100_000)     # live is bounded by the (Python) publisher
        cases = [
            ("publish  Agent.publish_async (futures)", lambda: bench_publish_async(
                broker, root, count)),
            ("publish  AsyncAgent.publish (asyncio)", lambda: bench_publish_asyncio(
                broker, root, count)),
            ("publish  Agent.publish (one round trip each)", lambda: bench_publish_sync(
                broker, root, max(1000, count // 20))),
            ("deliver  Agent handler (catch-up)", lambda: bench_deliver_thread(
                broker, root, count)),
            ("deliver  AsyncAgent handler (catch-up)", lambda: bench_deliver_asyncio(
                broker, root, count, False)),
            ("deliver  AsyncAgent async def handler", lambda: bench_deliver_asyncio(
                broker, root, count, True)),
            ("deliver  Agent.events() iterator", lambda: bench_iterator(
                broker, root, count)),
            ("deliver  Agent batch handler (catch-up)", lambda: bench_deliver_batch(
                broker, root, count)),
            ("deliver  Agent batch into SQLite (catch-up)", lambda: bench_deliver_sqlite(
                broker, root, count)),
            ("deliver  AsyncAgent batch handler (catch-up)",
             lambda: bench_deliver_asyncio_batch(broker, root, count, False)),
            ("deliver  AsyncAgent async def batch (catch-up)",
             lambda: bench_deliver_asyncio_batch(broker, root, count, True)),
            ("deliver  C per-event handler (catch-up)",
             lambda: c_figures.setdefault("c", run_c_batch_bench(broker, count))["event"]),
            ("deliver  C batch handler (catch-up)",
             lambda: c_figures.setdefault("c", run_c_batch_bench(broker, count))["batch"]),
            ("project  SQLiteProjection apply_batch (catch-up)", lambda: bench_projection(
                broker, root, count, sqlite_projection(root))),
            ("project  SQLiteProjection apply (catch-up)", lambda: bench_projection(
                broker, root, count, sqlite_projection(root), per_event=True)),
            ("project  SQLiteProjection temporal (until_ts)", lambda: bench_projection(
                broker, root, count, sqlite_projection(root),
                until_ts=ts_of(broker, root, count))),
            ("project  PostgresProjection apply_batch (catch-up)", lambda: bench_projection(
                broker, root, count, postgres().make)),
            ("project  PostgresProjection apply (catch-up)", lambda: bench_projection(
                broker, root, count, postgres().make, per_event=True)),
            ("live     Agent handler", lambda: bench_live(broker, root, live, "event")),
            ("live     Agent batch handler", lambda: bench_live(broker, root, live, "batch")),
            ("live     AsyncAgent handler", lambda: bench_live(broker, root, live, "aio")),
            ("live     AsyncAgent batch handler", lambda: bench_live(broker, root, count,
                                                                     "aio-batch")),
        ]
        c_figures = {}
        pg = []

        def postgres():
            if not pg:
                pg.append(PgServer())
            if pg[0].conninfo is None:
                raise RuntimeError("no PostgreSQL server (tests/pgserver.sh): %s"
                                   % pg[0].error)
            return pg[0]
        if args.only:
            cases = [(label, case) for label, case in cases if args.only in label]
            if not any(label.startswith("publish  Agent.publish_async") for label, _ in cases):
                bench_publish_async(broker, root, count)    # the backlog the others read
        for label, case in cases:
            try:
                value = case()
                rows.append((label, value))
                print("  %-48s %10.0f events/s" % (label, value), flush=True)
            except Exception as exc:            # a figure, never a failure
                print("  %-48s failed: %s" % (label, exc), flush=True)
    finally:
        broker.stop()
        for server in pg:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    if not args.no_c:
        print("\nThe C agent in the same run (bench/agent_bench, its own broker):", flush=True)
        print(run_c_bench(count, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

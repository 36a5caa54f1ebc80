"""test_projection_kill - kill -9 a projecting process hundreds of times

The claim of docs/projections.md: a projection's effects and its position
are committed in one transaction per batch, so a process killed at any
moment neither loses nor repeats an effect.  Here a worker process
(projection_kill_child.py, forked from a zygote so that each start costs
milliseconds) projects the ledger model (projection_model.py: qty = qty +
n, a ledger row per event keyed by seq, a running total: not idempotent)
into SQLite, then PostgreSQL, and is SIGKILLed at a random moment, again
and again (at least HERALD_KILLS times, default 200, per database), while
events are published and after; each worker gets a random batch_max.  A
kill comes either at a random moment of the worker's first 30 ms (its
start: the agent, the database opened, the check against the broker, the
first batch) or, 70% of the time, 0-4 ms after its position moved (in
the middle of its transactions); the test counts the latter and fails
if too few of the kills landed in the work.
Then one worker runs to the last seq undisturbed, and its read model is
compared, row for row, with one built by an uninterrupted run into a fresh
database: identical.

The moments, the batch sizes and the events come from one seed, printed
with every failure; HERALD_KILL_SEED=N replays it (the interleaving with
the broker and the database still varies from run to run).
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

import herald
from herald.projection import PostgresProjection, SQLiteProjection
from conftest import BUILDDIR, PACKAGE_ROOT, Broker
from pgserver import pg_server  # noqa: F401  (the module's server fixture)
from projection_model import Ledger, dump

HERE = os.path.dirname(os.path.abspath(__file__))
KILLS = int(os.environ.get("HERALD_KILLS", "200"))
#  Events per database: enough that the killed workers are still behind
#  when the publishing ends (PostgreSQL applies them slower)
EVENTS = {"sqlite": int(os.environ.get("HERALD_KILL_EVENTS", "30000")),
          "postgres": int(os.environ.get("HERALD_KILL_EVENTS", "4000"))}


def seed_of():
    text = os.environ.get("HERALD_KILL_SEED")
    return int(text) if text else random.SystemRandom().randrange(1, 2 ** 31)


class Zygote:
    """projection_kill_child.py: forks workers on request."""

    def __init__(self, kind, where, broker, log_path):
        env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT), HERALD_BUILDDIR=str(BUILDDIR),
                   PYTHONDONTWRITEBYTECODE="1")
        self.log = open(log_path, "ab")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "projection_kill_child.py"), kind, where,
             broker.api, broker.fanout],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env)
        self.live = set()

    def ask(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().decode().split()
        if len(answer) != 2:
            raise AssertionError("the zygote said %r:\n%s" % (answer, self.tail()))
        return int(answer[1])

    def spawn(self, *words):
        pid = self.ask(" ".join(str(w) for w in words))
        self.live.add(pid)
        return pid

    def kill(self, pid):
        os.kill(pid, signal.SIGKILL)            # not reaped yet: still our worker's pid

    def reap(self, pid):
        status = self.ask("reap %d" % pid)
        self.live.discard(pid)
        return status

    def tail(self, lines=20):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])

    def close(self):
        for pid in list(self.live):
            try:
                os.kill(pid, signal.SIGKILL)
                self.reap(pid)
            except (OSError, AssertionError):
                pass
        try:
            self.proc.stdin.close()
            self.proc.wait(30)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Publisher(threading.Thread):
    """Publishes the seed's events in chunks while the kills go on."""

    def __init__(self, broker, state_dir, rng, count):
        super().__init__(daemon=True)
        self.agent = herald.Agent("publisher", state_dir=state_dir, api=broker.api,
                                  fanout=broker.fanout, heartbeat=0.2)
        self.changes = [("sku%d" % rng.randrange(12), rng.randrange(-20, 40))
                        for _ in range(count)]
        size = max(1, count // 30)
        self.chunks = [self.changes[i:i + size] for i in range(0, count, size)]
        self.pauses = [rng.uniform(0.0, 0.3) for _ in self.chunks]
        self.last_seq = 0
        self.error = None

    def run(self):
        try:
            for chunk, pause in zip(self.chunks, self.pauses):
                futures = [self.agent.publish_async("stock.%s" % sku, {"sku": sku, "n": n},
                                                    type="StockChanged")
                           for sku, n in chunk]
                self.agent.flush(60)
                self.last_seq = futures[-1].result().seq
                time.sleep(pause)
        except BaseException as exc:            # reported by the test
            self.error = exc


class Position:
    """Reads the projection's committed position (one connection, no lock
    taken: SQLite WAL readers and PostgreSQL MVCC do not wait for the
    worker's transaction)."""

    def __init__(self, kind, where):
        self.kind = kind
        if kind == "sqlite":
            import sqlite3
            self.conn = sqlite3.connect(where, timeout=10, isolation_level=None)
        else:
            import psycopg2
            self.conn = psycopg2.connect(where)
            self.conn.autocommit = True

    def read(self):
        try:
            if self.kind == "sqlite":
                cursor = self.conn.execute("SELECT seq FROM herald_projection "
                                           "WHERE name = 'stock'")
            else:
                cursor = self.conn.cursor()
                cursor.execute("SELECT seq FROM herald_projection WHERE name = 'stock'")
            row = cursor.fetchone()
            return row[0] if row else 0
        except Exception as exc:
            if "herald_projection" in str(exc):   # not created yet
                return 0
            raise

    def close(self):
        self.conn.close()


def query(kind, where, sql):
    if kind == "sqlite":
        import sqlite3
        conn = sqlite3.connect(where, timeout=10)
        try:
            return [tuple(row) for row in conn.execute(sql).fetchall()]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            conn.close()
    import psycopg2
    conn = psycopg2.connect(where)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT to_regclass('herald_projection') IS NOT NULL")
            if not cursor.fetchone()[0]:
                return []
            cursor.execute(sql)
            return [tuple(row) for row in cursor.fetchall()]
    finally:
        conn.close()


def position_of(kind, where):
    reader = Position(kind, where)
    try:
        return reader.read()
    finally:
        reader.close()


def reference(kind, where, broker, last_seq):
    """The read model of an uninterrupted run into a fresh database."""
    model = Ledger("?" if kind == "sqlite" else "%s")
    cls = SQLiteProjection if kind == "sqlite" else PostgresProjection
    with herald.Agent("reference", state_dir=None, api=broker.api, fanout=broker.fanout,
                      heartbeat=0.2) as agent:
        #  32 a transaction: the running total is one row updated by every
        #  event, and PostgreSQL walks that row's versions of the transaction
        #  on each update (256 a transaction is slower there)
        with cls(agent, "stock", where, prefixes="stock.", setup=model.setup,
                 reset=model.reset, apply=model.apply, batch_max=32) as projection:
            projection.start()
            status = projection.wait(last_seq, 120)
            assert status.applied == EVENTS[kind] and status.skipped == 0
    return dump(lambda sql: query(kind, where, sql))


def kill_run(kind, where, fresh, broker, tmp_path):
    seed = seed_of()
    rng = random.Random(seed)
    said = "seed %d (HERALD_KILL_SEED=%d replays it)" % (seed, seed)
    print("\n%s projection: %s" % (kind, said))
    events = EVENTS[kind]
    publisher = Publisher(broker, str(tmp_path / ("publisher-" + kind)), rng, events)
    zygote = Zygote(kind, where, broker, str(tmp_path / ("zygote-%s.log" % kind)))
    position = Position(kind, where)
    kills = working = after = 0
    began = time.monotonic()
    try:
        publisher.start()
        last_position = 0
        bounded = time.monotonic() + 150          # a hang, not a speed: ~10 s is usual
        while kills < KILLS or publisher.is_alive():
            assert time.monotonic() < bounded, "%d kills in 150 s; %s" % (kills, said)
            publishing = publisher.is_alive()
            pid = zygote.spawn("run", rng.choice((1, 2, 7, 32, 256)))
            if rng.random() < 0.3:
                # a moment of its first milliseconds: starting, opening the
                # database, the check against the broker, the first batch
                time.sleep(rng.uniform(0, 0.03))
            else:
                # a moment of its work: once its position moved (when there is
                # work: events published beyond it), a little later
                limit = time.monotonic() + (2.0 if publisher.last_seq > last_position
                                            else 0.03)
                while position.read() <= last_position and time.monotonic() < limit:
                    time.sleep(0.001)
                if position.read() > last_position:
                    working += 1
                time.sleep(rng.uniform(0, 0.004))   # a few ms: the backlog lasts
            zygote.kill(pid)
            status = zygote.reap(pid)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
                "the worker ended by itself (status %d) before it was killed; %s\n%s" \
                % (status, said, zygote.tail())
            kills += 1
            now = position.read()
            assert now >= last_position, "the position went back; " + said
            if not publishing and now < publisher.last_seq:
                after += 1
            last_position = now
        print("%s: the kills took %.1f s" % (kind, time.monotonic() - began))
        began = time.monotonic()
        publisher.join(60)
        assert publisher.error is None, "%r; %s" % (publisher.error, said)
        last_seq = publisher.last_seq
        pid = zygote.spawn("final", last_seq, 32)
        status = zygote.reap(pid)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, \
            "the last run failed (status %d); %s\n%s" % (status, said, zygote.tail())
        print("%s: the last run took %.1f s" % (kind, time.monotonic() - began))
    finally:
        position.close()
        zygote.close()
        publisher.agent.close()
    print("%s: %d kills, %d of them while the worker was applying events, %d after the "
          "publishing had ended (events still to apply); %d events, last seq %d"
          % (kind, kills, working, after, events, last_seq))
    assert kills >= KILLS and working >= KILLS // 5, "the kills missed the work; " + said
    killed = dump(lambda sql: query(kind, where, sql))
    assert position_of(kind, where) == last_seq
    began = time.monotonic()
    want = reference(kind, fresh, broker, last_seq)
    print("%s: the uninterrupted run took %.1f s" % (kind, time.monotonic() - began))
    assert len(want["ledger"]) == events
    for table in want:
        assert killed[table] == want[table], "table %s differs; %s" % (table, said)


@pytest.fixture
def broker(tmp_path):
    """heraldd that ends a stream left without credit after 1 s (60 s by
    default): each worker killed in its catch-up leaves its REPLAY stream
    waiting, and 200 of them within seconds would reach max-streams (64:
    then a REPLAY is refused as overloaded, which the projection retries
    for its start's timeout, but not for a minute)."""
    b = Broker(tmp_path, "kills", flags=["--stream-idle-ms", "1000"]).start()
    yield b
    why = b.stop()
    if why:
        pytest.fail(why + "\n" + b.log_tail())


def test_sqlite_projection_killed_hundreds_of_times(broker, tmp_path):
    kill_run("sqlite", str(tmp_path / "killed.db"), str(tmp_path / "reference.db"), broker,
             tmp_path)


def test_postgres_projection_killed_hundreds_of_times(pg_server, broker,  # noqa: F811
                                                      tmp_path):
    kill_run("postgres", pg_server.database("killed"), pg_server.database("reference"),
             broker, tmp_path)

"""test_projection - herald.projection against a real heraldd, SQLite and PostgreSQL

Every rule of docs/projections.md's contract, on both databases where it
applies (a private PostgreSQL server per module: pgserver.py): the
position table and its row; one transaction per batch; events at or below
the stored seq skipped, so two processes running one projection never both
apply an event; RETRY; an apply error (the events before it committed,
FAILED, the seq named); transient database errors retried (SQLite busy; a
PostgreSQL lock timeout and a server killed under the projection); a
function that ends the transaction itself; losses (a position beyond the
broker's log; a broker that lost events, for real: WAL deleted, the loss
accepted with `herald repair --accept-loss`); rebuild; a lost database;
temporal projections (until_ts inclusive, batch_max, until_ts kept in the
row, resumed after a failure); schemas, live and temporal; AsyncAgent;
bad arguments (nothing written).  The read model (projection_model.py) is
not idempotent: a lost or repeated effect changes it.  No timed assertion.
"""

import asyncio
import glob
import os
import sqlite3
import subprocess
import time

import pytest

import herald
from herald.projection import PostgresProjection, SQLiteProjection
from conftest import BUILDDIR, Broker, wait_for
from pgserver import pg_server  # noqa: F401  (the module's server fixture)
from projection_model import Ledger, dump, expected

WAIT = 30.0


class SQLiteSide:
    kind = "sqlite"
    placeholder = "?"

    def __init__(self, tmp_path, label="model"):
        self.tmp_path = tmp_path
        self.path = str(tmp_path / ("%s.db" % label))

    def make(self, agent, name, **options):
        return SQLiteProjection(agent, name, self.path, **options)

    def connect(self):
        return sqlite3.connect(self.path, isolation_level=None)

    def query(self, sql, args=()):
        conn = sqlite3.connect(self.path)
        try:
            return [tuple(row) for row in conn.execute(sql, args).fetchall()]
        finally:
            conn.close()

    def another(self, label):
        return SQLiteSide(self.tmp_path, label)


class PgSide:
    kind = "postgres"
    placeholder = "%s"

    schemas = 0

    def __init__(self, server):
        #  A schema of its own per side (a CREATE DATABASE costs a second):
        #  every unqualified table, the position table too, goes there
        PgSide.schemas += 1
        schema = "t%d_%d" % (os.getpid(), PgSide.schemas)
        self.server = server
        server.query("CREATE SCHEMA %s" % schema)
        self.dsn = server.conninfo + " options='-c search_path=%s'" % schema

    def make(self, agent, name, **options):
        return PostgresProjection(agent, name, self.dsn, **options)

    def connect(self):
        import psycopg2
        return psycopg2.connect(self.dsn)

    def query(self, sql, args=()):
        import psycopg2
        conn = psycopg2.connect(self.dsn)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), args)
                return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
        finally:
            conn.close()

    def another(self, label):
        return PgSide(self.server)


@pytest.fixture(params=["sqlite", "postgres"])
def side(request, tmp_path):
    if request.param == "sqlite":
        return SQLiteSide(tmp_path)
    return PgSide(request.getfixturevalue("pg_server"))


@pytest.fixture
def sqlite_side(tmp_path):
    return SQLiteSide(tmp_path)


def agent_on(broker, name="projector", **options):
    options.setdefault("heartbeat", 0.2)
    return herald.Agent(name, state_dir=None, api=broker.api, fanout=broker.fanout, **options)


@pytest.fixture
def agents(broker):
    made = []

    def make(name="projector", on=None, **options):
        agent = agent_on(on or broker, name, **options)
        made.append(agent)
        return agent
    yield make
    for agent in made:
        agent.close()


def publish_changes(agent, changes, type="StockChanged"):
    """Publish [(sku, n), ...]; returns [(seq, sku, n), ...]."""
    futures = [agent.publish_async("stock.%s" % sku, {"sku": sku, "n": n}, type=type)
               for sku, n in changes]
    agent.flush(WAIT)
    return [(f.result().seq, sku, n) for f, (sku, n) in zip(futures, changes)]


def some_changes(count, start=0):
    return [("sku%d" % ((start + i) % 7), (start + i) % 11 - 3) for i in range(count)]


def ledger_projection(side, agent, name="stock", **options):
    model = Ledger(side.placeholder)
    options.setdefault("setup", model.setup)
    options.setdefault("reset", model.reset)
    options.setdefault("apply", model.apply)
    options.setdefault("prefixes", "stock.")
    return side.make(agent, name, **options)


# -- the position table --------------------------------------------------------

def test_the_position_table_and_its_row(side, agents):
    agent = agents()
    projection = ledger_projection(side, agent)
    rows = side.query("SELECT name, seq, lineage, until_ts, updated_ns FROM herald_projection")
    assert [row[:4] for row in rows] == [("stock", 0, 0, 0)] and rows[0][4] > 0
    status = projection.status()
    assert (status.state, status.position, status.until_ts, status.applied) == ("idle", 0, 0, 0)
    published = publish_changes(agent, some_changes(40))
    projection.start()
    status = projection.wait(published[-1][0], WAIT)
    assert status.position == published[-1][0] and status.applied == 40
    (seq, lineage, until_ts, updated_ns), = side.query(
        "SELECT seq, lineage, until_ts, updated_ns FROM herald_projection WHERE name = 'stock'")
    assert (seq, lineage, until_ts) == (published[-1][0], 0, 0)
    assert abs(updated_ns - time.time_ns()) < 3600 * 10 ** 9
    assert dump(side.query) == expected(published)
    # another projection in the same database: a row of its own in the same table
    other = ledger_projection(side, agent, name="other", table="herald_projection",
                              setup=lambda db: None, reset=lambda db: None,
                              apply=lambda db, event: None)
    assert sorted(r[0] for r in side.query("SELECT name FROM herald_projection")) == \
        ["other", "stock"]
    other.close()
    projection.close()


def test_a_position_table_of_another_name(side, agents):
    agent = agents()
    published = publish_changes(agent, some_changes(10))
    #  Quoted as the C library quotes it: the case is kept, also in PostgreSQL
    with ledger_projection(side, agent, table="Views_Position") as projection:
        projection.start()
        projection.wait(published[-1][0], WAIT)
    assert side.query('SELECT name, seq FROM "Views_Position"') == [("stock", published[-1][0])]
    assert dump(side.query) == expected(published)


# -- live: exactly once, resumed ---------------------------------------------------

def test_live_projection_applies_each_event_once_and_resumes(side, agents):
    agent = agents()
    first = publish_changes(agent, some_changes(120))
    projection = ledger_projection(side, agent)
    projection.start()
    projection.wait(first[-1][0], WAIT)
    wait_for(lambda: projection.status().state == "live", what="live")
    live = publish_changes(agent, some_changes(30, 120))          # while live
    status = projection.wait(live[-1][0], WAIT)
    assert status.applied == 150 and status.skipped == 0 and status.error == 0
    projection.close()
    later = publish_changes(agent, some_changes(40, 150))         # while it is away
    with ledger_projection(side, agent) as again:
        assert again.status().position == live[-1][0]
        again.start()
        status = again.wait(later[-1][0], WAIT)
        assert status.applied == 40                               # the new ones only
    assert dump(side.query) == expected(first + live + later)


def test_one_transaction_per_batch(side, agents):
    agent = agents()
    published = publish_changes(agent, some_changes(200))
    with ledger_projection(side, agent, batch_max=1) as one_by_one:
        one_by_one.start()
        status = one_by_one.wait(published[-1][0], WAIT)
        assert status.transactions == status.applied == 200
    other = side.another("batched")
    with ledger_projection(other, agent, batch_max=64) as batched:
        batched.start()
        status = batched.wait(published[-1][0], WAIT)
        assert status.applied == 200 and 4 <= status.transactions <= 200
    assert dump(other.query) == dump(side.query) == expected(published)


def test_two_processes_running_one_projection_never_both_apply_an_event(side, agents):
    a, b = agents("projector-a"), agents("projector-b")
    pa, pb = ledger_projection(side, a), ledger_projection(side, b)
    pa.start()
    pb.start()
    published = publish_changes(agents("publisher"), some_changes(400))
    last = published[-1][0]
    pa.wait(last, WAIT)
    pb.wait(last, WAIT)
    # each saw every event (one may know the position from the row before
    # it had its own copies of the last ones to skip)...
    for projection in (pa, pb):
        wait_for(lambda: projection.status().applied + projection.status().skipped == 400,
                 what=lambda: "400 events seen: %s" % (projection.status(),))
    # ...and applied each that the other did not: every event exactly once
    assert pa.status().applied + pb.status().applied == 400
    pa.close()
    pb.close()
    assert dump(side.query) == expected(published)


def test_apply_batch_gets_lists(side, agents):
    agent = agents()
    published = publish_changes(agent, some_changes(300))
    model = Ledger(side.placeholder)
    sizes = []

    def apply_batch(db, events):
        sizes.append(len(events))
        for event in events:
            model.apply(db, event)
    with ledger_projection(side, agent, apply=None, apply_batch=apply_batch,
                           batch_max=50) as projection:
        projection.start()
        projection.wait(published[-1][0], WAIT)
    assert sum(sizes) == 300 and max(sizes) <= 50
    assert dump(side.query) == expected(published)


def test_a_subclass_defines_the_functions(side, agents):
    agent = agents()
    model = Ledger(side.placeholder)

    class Stock(SQLiteProjection if side.kind == "sqlite" else PostgresProjection):
        prefixes = ["stock."]

        def setup(self, db):
            model.setup(db)

        def reset(self, db):
            model.reset(db)

        def apply(self, db, event):
            model.apply(db, event)
    published = publish_changes(agent, some_changes(25))
    where = side.path if side.kind == "sqlite" else side.dsn
    with Stock(agent, "stock", where) as projection:
        projection.start()
        projection.wait(published[-1][0], WAIT)
        projection.rebuild()                    # running: started again
        assert projection.wait(published[-1][0], WAIT).rebuilds == 1
    assert dump(side.query) == expected(published)


# -- errors -----------------------------------------------------------------------

def test_an_apply_error_commits_the_events_before_it_and_stops(side, agents):
    agent = agents()
    changes = some_changes(30) + [("bad", 1)] + some_changes(20, 30)
    published = publish_changes(agent, changes)
    bad_seq = published[30][0]
    model = Ledger(side.placeholder)

    def apply(db, event):
        if event.json()["sku"] == "bad":
            raise ValueError("no such sku")
        model.apply(db, event)
    projection = ledger_projection(side, agent, apply=apply)
    projection.start()
    with pytest.raises(herald.ApplyError) as caught:
        projection.wait(published[-1][0], WAIT)
    assert caught.value.seq == bad_seq and isinstance(caught.value.cause, ValueError)
    status = projection.status()
    assert status.state == "failed" and status.position == bad_seq - 1
    assert "seq %d" % bad_seq in status.message and "no such sku" in status.message
    assert dump(side.query) == expected(published[:30])        # the ones before it
    # fixed: started again, it goes on from the failing event
    projection.close()
    with ledger_projection(side, agent) as fixed:
        fixed.start()
        fixed.wait(published[-1][0], WAIT)
    assert dump(side.query) == expected(published)


def test_retry_rolls_the_batch_back_and_offers_it_again(side, agents):
    agent = agents()
    published = publish_changes(agent, some_changes(60))
    model = Ledger(side.placeholder)
    refused = []

    def apply(db, event):
        model.apply(db, event)                  # rolled back with the batch
        if event.seq == published[40][0] and len(refused) < 3:
            refused.append(event.seq)
            raise herald.Retry()
    with ledger_projection(side, agent, apply=apply) as projection:
        projection.start()
        status = projection.wait(published[-1][0], WAIT)
        assert len(refused) == 3 and status.rollbacks >= 3 and status.applied == 60
    assert dump(side.query) == expected(published)


def test_an_apply_that_ends_the_transaction_fails_the_projection(side, agents):
    agent = agents()
    published = publish_changes(agent, some_changes(5))

    def apply(db, event):
        db.execute("COMMIT")
    with ledger_projection(side, agent, apply=apply) as projection:
        projection.start()
        with pytest.raises(herald.HeraldError) as caught:
            projection.wait(published[-1][0], WAIT)
        assert "never BEGIN, COMMIT or ROLLBACK" in str(caught.value)
        assert projection.status().position == 0
    assert side.query("SELECT seq FROM herald_projection") == [(0,)]


def test_sqlite_busy_is_retried(sqlite_side, agents):
    agent = agents()
    projection = ledger_projection(sqlite_side, agent)
    projection.start()
    blocker = sqlite_side.connect()
    blocker.execute("BEGIN IMMEDIATE")          # another writer holds the file
    try:
        published = publish_changes(agents("publisher"), some_changes(50))
        wait_for(lambda: projection.status().rollbacks >= 3, what="busy rollbacks")
        assert projection.status().position == 0 and projection.status().state != "failed"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    status = projection.wait(published[-1][0], WAIT)
    assert status.applied == 50
    projection.close()
    assert dump(sqlite_side.query) == expected(published)


def test_postgres_lock_timeout_and_a_lost_server_are_retried(pg_server, agents):  # noqa: F811
    side = PgSide(pg_server)
    side.dsn = side.dsn[:-1] + " -c lock_timeout=100'"
    agent = agents()
    projection = ledger_projection(side, agent)
    projection.start()
    first = publish_changes(agent, some_changes(20))
    projection.wait(first[-1][0], WAIT)
    blocker = side.connect()
    cursor = blocker.cursor()
    cursor.execute("SELECT seq FROM herald_projection WHERE name = 'stock' FOR UPDATE")
    publisher = agents("publisher")
    try:
        held = publish_changes(publisher, some_changes(20, 20))
        wait_for(lambda: projection.status().rollbacks >= 2, what="lock timeouts")
        assert projection.status().position == first[-1][0]
    finally:
        blocker.rollback()
        blocker.close()
    projection.wait(held[-1][0], WAIT)
    # the server killed (-9) under the projection, then started again
    pg_server.kill()
    during = publish_changes(publisher, some_changes(20, 40))
    wait_for(lambda: projection.status().rollbacks >= 4, what="connection lost")
    pg_server.restart()
    status = projection.wait(during[-1][0], WAIT)
    assert status.state != "failed" and status.applied == 60
    projection.close()
    assert dump(side.query) == expected(first + held + during)


# -- losses -------------------------------------------------------------------------

def test_a_position_beyond_the_brokers_log_is_data_lost(side, agents, tmp_path):
    agent = agents()
    published = publish_changes(agent, some_changes(30))
    with ledger_projection(side, agent) as projection:
        projection.start()
        projection.wait(published[-1][0], WAIT)
    other = Broker(tmp_path, "other").start()           # another log, 10 events
    try:
        elsewhere = agents("elsewhere", on=other)
        fresh = publish_changes(elsewhere, some_changes(10, 500))
        projection = ledger_projection(side, elsewhere)
        with pytest.raises(herald.DataLostError) as caught:
            projection.start()
        assert "beyond the broker's log" in str(caught.value)
        assert projection.status().state == "failed"
        assert dump(side.query) == expected(published)          # untouched
        projection.rebuild()
        assert projection.status().position == 0
        projection.start()
        projection.wait(fresh[-1][0], WAIT)
        projection.close()
        assert dump(side.query) == expected(fresh)
    finally:
        elsewhere.close()
        assert other.stop() is None


def _lose_newest_events(broker):
    """kill -9 the broker, delete its write-ahead log (durability async: the
    newest events were only there), accept the loss as an operator does."""
    broker.kill()
    for path in glob.glob(os.path.join(broker.data_dir, "*.log")):
        os.unlink(path)
    herald_cli = str(BUILDDIR / "tools" / "herald")
    done = subprocess.run([herald_cli, "repair", "--data-dir", broker.data_dir,
                           "--accept-loss"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    broker.start()


def test_a_broker_that_lost_events_fails_the_projection_until_rebuilt(sqlite_side, agents,
                                                                        broker):
    agent = agents()
    published = publish_changes(agent, some_changes(200))
    projection = ledger_projection(sqlite_side, agent)
    projection.start()
    projection.wait(published[-1][0], WAIT)
    _lose_newest_events(broker)
    publisher = agents("publisher-2")
    wait_for(lambda: publisher.stats().node != "", what="the broker again")
    kept = publisher.replay(from_seq=1).last
    assert kept < 200, "nothing was lost: the test proves nothing"
    after = publish_changes(publisher, some_changes(50, 1000))     # at the reused seqs
    # running: the agent reports the loss, the projection stops
    with pytest.raises(herald.DataLostError):
        projection.wait(10 ** 9, WAIT)
    assert projection.status().state == "failed"
    projection.close()
    assert dump(sqlite_side.query) == expected(published)         # nothing of the new log
    # started again: the lineage stored is not the broker's
    projection = ledger_projection(sqlite_side, agents("projector-2"))
    with pytest.raises(herald.DataLostError) as caught:
        projection.start()
    assert "lineage" in str(caught.value)
    projection.rebuild()
    projection.start()
    projection.wait(after[-1][0], WAIT)
    (lineage,), = sqlite_side.query("SELECT lineage FROM herald_projection")
    assert lineage == 1 and projection.status().lineage == 1
    projection.close()
    kept_changes = [c for c in published if c[0] <= kept]
    assert dump(sqlite_side.query) == expected(kept_changes + after)


# -- rebuild -------------------------------------------------------------------------

def test_rebuild_drops_and_builds_again(side, agents):
    agent = agents()
    published = publish_changes(agent, some_changes(80))
    calls = []
    model = Ledger(side.placeholder)

    def reset(db):
        calls.append("reset")
        model.reset(db)

    def setup(db):
        calls.append("setup")
        model.setup(db)
    with ledger_projection(side, agent, reset=reset, setup=setup) as projection:
        projection.start()
        projection.wait(published[-1][0], WAIT)
        before = dump(side.query)
        calls.clear()
        status = projection.rebuild()                 # running: started again
        assert calls == ["reset", "setup"] and status.rebuilds == 1
        status = projection.wait(published[-1][0], WAIT)
        assert status.applied == 160
        assert dump(side.query) == before == expected(published)


def test_rebuild_without_reset_is_refused(side, agents):
    agent = agents()
    with ledger_projection(side, agent, reset=None) as projection:
        with pytest.raises(herald.InvalidArgumentError):
            projection.rebuild()


def test_a_lost_database_is_built_again_from_the_log(sqlite_side, agents):
    agent = agents()
    published = publish_changes(agent, some_changes(70))
    with ledger_projection(sqlite_side, agent) as projection:
        projection.start()
        projection.wait(published[-1][0], WAIT)
    before = dump(sqlite_side.query)
    for path in glob.glob(sqlite_side.path + "*"):            # the file, -wal, -shm
        os.unlink(path)
    with ledger_projection(sqlite_side, agent) as projection:
        assert projection.status().position == 0
        projection.start()
        projection.wait(published[-1][0], WAIT)
    assert dump(sqlite_side.query) == before == expected(published)


# -- temporal -------------------------------------------------------------------------

def days(agent, count=3, per_day=12):
    """Publish `count` phases ("days"); returns [(changes, end_ts)], end_ts
    the ts of each phase's last event (its end, inclusive)."""
    out = []
    for day in range(count):
        changes = publish_changes(agent, some_changes(per_day, day * per_day))
        end_ts = agent.replay(from_seq=changes[-1][0], to_seq=changes[-1][0])[0].ts
        out.append((changes, end_ts))
    return out


def test_a_temporal_projection_is_the_read_model_as_of_an_instant(side, agents):
    agent = agents()
    phases = days(agent)
    sides = []
    for day, (changes, end_ts) in enumerate(phases):
        where = side.another("day%d" % day)
        sides.append(where)
        with ledger_projection(where, agent, until_ts=end_ts, batch_max=5) as projection:
            status = projection.start()
            assert status.state == "done" and status.until_ts == end_ts
            upto = [c for phase in phases[:day + 1] for c in phase[0]]
            assert status.position == upto[-1][0]           # until_ts inclusive
            assert status.applied == len(upto)
            assert status.transactions == -(-len(upto) // 5)
            assert dump(where.query) == expected(upto)
            assert where.query("SELECT until_ts FROM herald_projection") == [(end_ts,)]
    # one instant per name: another until_ts is refused
    where = sides[0]
    with pytest.raises(herald.InvalidArgumentError) as caught:
        ledger_projection(where, agent, until_ts=phases[1][1])
    assert "rebuild it, or use another name" in str(caught.value)
    with pytest.raises(herald.InvalidArgumentError):
        ledger_projection(where, agent)                    # nor live
    # a datetime works as an instant; ts strictly before the first event: empty
    first_ts = agent.replay(from_seq=1, to_seq=1)[0].ts
    with ledger_projection(side.another("before"), agent, until_ts=first_ts - 1) as empty:
        assert empty.start().position == 0


def test_a_temporal_projection_resumes_after_a_failure(side, agents):
    agent = agents()
    (changes, end_ts), = days(agent, count=1, per_day=40)
    model = Ledger(side.placeholder)
    failing = changes[25][0]

    def apply(db, event):
        if event.seq == failing:
            raise RuntimeError("a bug")
        model.apply(db, event)
    with ledger_projection(side, agent, until_ts=end_ts, apply=apply,
                           batch_max=10) as projection:
        with pytest.raises(herald.ApplyError):
            projection.start()
        assert projection.status().position == failing - 1
    assert dump(side.query) == expected(changes[:25])
    with ledger_projection(side, agent, until_ts=end_ts, batch_max=10) as fixed:
        assert fixed.start().applied == 15
    assert dump(side.query) == expected(changes)


# -- schemas ---------------------------------------------------------------------------

def test_schemas_convert_events_live_and_temporal(sqlite_side, agents):
    agent = agents()
    agent.publish("stock.a", {"sku": "a", "qty": 2}, type="StockChanged", schema=1)
    agent.publish("stock.b", {"sku": "b", "n": 5}, type="StockChanged", schema=2)
    last = agent.publish("stock.a", {"sku": "a", "n": -1}, type="StockChanged", schema=2)

    @agent.upcaster("StockChanged", 1, codec="json")
    def qty_to_n(change):
        return {"sku": change["sku"], "n": change["qty"]}
    seen = []
    model = Ledger()

    def apply(db, event):
        seen.append((event.seq, event.schema, event.stored_schema))
        model.apply(db, event)
    want = [(1, 2, 1), (2, 2, 2), (3, 2, 2)]
    with ledger_projection(sqlite_side, agent, apply=apply,
                           schemas={"StockChanged": 2}) as live:
        live.start()
        live.wait(last.seq, WAIT)
    assert seen == want
    until = agent.replay(from_seq=3, to_seq=3)[0].ts
    seen.clear()
    temporal = sqlite_side.another("temporal")
    with ledger_projection(temporal, agent, apply=apply, schemas={"StockChanged": 2},
                           until_ts=until) as projection:
        assert projection.start().state == "done"
    assert seen == want
    assert dump(temporal.query) == dump(sqlite_side.query) == \
        expected([(1, "a", 2), (2, "b", 5), (3, "a", -1)])


# -- asyncio ---------------------------------------------------------------------------

def test_on_an_async_agent(sqlite_side, broker):
    model = Ledger()

    async def main():
        async with herald.AsyncAgent("projector", state_dir=None, api=broker.api,
                                     fanout=broker.fanout, heartbeat=0.2) as agent:
            futures = [agent.publish("stock.%s" % sku, {"sku": sku, "n": n})
                       for sku, n in some_changes(50)]
            published = [(await f).seq for f in futures]
            async with SQLiteProjection(agent, "stock", sqlite_side.path, prefixes="stock.",
                                        setup=model.setup, apply=model.apply) as projection:
                await projection.start_async()
                with pytest.raises(herald.InvalidArgumentError):
                    projection.wait(published[-1], 1)      # would block the loop
                status = await projection.wait_async(published[-1], WAIT)
                return published, status
    published, status = asyncio.run(asyncio.wait_for(main(), 60))
    assert status.applied == 50
    assert dump(sqlite_side.query) == expected(
        [(seq, sku, n) for seq, (sku, n) in zip(published, some_changes(50))])


# -- bad arguments: refused, nothing written ------------------------------------------------

def test_bad_arguments_are_refused_and_nothing_is_written(tmp_path, agents):
    agent = agents()
    path = str(tmp_path / "never.db")
    model = Ledger()
    good = dict(prefixes="stock.", apply=model.apply)
    bad = [
        ("name", dict(good), "bad name!"),
        ("prefixes", dict(good, prefixes=[]), "p"),
        ("apply", dict(prefixes="stock."), "p"),
        ("apply=fn(db", dict(good, apply_batch=lambda db, events: None), "p"),
        ("table", dict(good, table="drop table x;"), "p"),
        ("batch_max", dict(good, batch_max=257), "p"),
        ("batch_max", dict(good, batch_max=-1), "p"),
        ("until_ts", dict(good, until_ts=-5), "p"),
        ("on_incompatible", dict(good, on_incompatible="ignore"), "p"),
    ]
    for word, options, name in bad:
        with pytest.raises((ValueError, TypeError)) as caught:
            SQLiteProjection(agent, name, path, **options)
        assert word in str(caught.value), (word, caught.value)
        assert not os.path.exists(path)

    async def coroutine(db, event):
        pass
    with pytest.raises(TypeError):
        SQLiteProjection(agent, "p", path, prefixes="stock.", apply=coroutine)
    with pytest.raises(TypeError):
        SQLiteProjection(object(), "p", path, **good)
    assert not os.path.exists(path)
    # a database that cannot be opened: HeraldIOError-like, with its message
    with pytest.raises(Exception) as caught:
        SQLiteProjection(agent, "p", str(tmp_path / "no" / "such" / "dir.db"), **good)
    assert "unable to open" in str(caught.value)
    with pytest.raises(Exception):
        PostgresProjection(agent, "p", "host=127.0.0.1 port=1 dbname=x connect_timeout=1",
                           **good)


def test_a_damaged_database_is_refused_untouched(tmp_path, agents):
    agent = agents()
    path = tmp_path / "damaged.db"
    garbage = b"not a database, " * 512
    path.write_bytes(garbage)
    model = Ledger()
    with pytest.raises(herald.HeraldIOError) as caught:
        SQLiteProjection(agent, "stock", str(path), prefixes="stock.", apply=model.apply,
                         setup=model.setup)
    assert "file is not a database" in str(caught.value)
    assert path.read_bytes() == garbage


def test_a_full_database_stops_the_projection_at_a_whole_batch(sqlite_side, agents):
    """SQLite's own "database or disk is full" (a page limit set on the
    connection, as a full disk would say it): the projection stops with the
    database's message, the read model as after its last whole batch; with
    room again it goes on from there."""
    agent = agents()
    model = Ledger()
    limited = []

    def setup(db):
        model.setup(db)
        if not limited:
            (pages,), = db.execute("PRAGMA page_count").fetchall()
            db.execute("PRAGMA max_page_count = %d" % (pages + 3))
            limited.append(pages)
    published = publish_changes(agents("publisher"), some_changes(3000))
    projection = ledger_projection(sqlite_side, agent, setup=setup, batch_max=16)
    projection.start()
    with pytest.raises(herald.HeraldError) as caught:
        projection.wait(published[-1][0], WAIT)
    assert "full" in str(caught.value)
    status = projection.status()
    assert status.state == "failed" and 0 < status.position < published[-1][0]
    projection.close()
    upto = [c for c in published if c[0] <= status.position]
    assert dump(sqlite_side.query) == expected(upto)            # whole batches only
    with ledger_projection(sqlite_side, agent) as again:        # room again
        again.start()
        again.wait(published[-1][0], WAIT)
    assert dump(sqlite_side.query) == expected(published)


def test_postgres_an_apply_that_swallows_a_failed_statement_commits_nothing(
        pg_server, agents):  # noqa: F811
    """A statement that failed aborts PostgreSQL's transaction; psycopg2
    would let a COMMIT through (the server answers it ROLLBACK): the
    projection sees the aborted transaction and stops, nothing of the
    batch counted as committed."""
    import psycopg2
    side = PgSide(pg_server)
    agent = agents()
    model = Ledger("%s")
    published = publish_changes(agent, some_changes(20) + [("bad", 1)] + some_changes(5, 20))
    bad_seq = published[20][0]

    def apply(db, event):
        if event.seq == bad_seq:
            try:
                db.execute("SELECT no_such_column FROM stock")
            except psycopg2.Error:
                pass                            # swallowed: the transaction is aborted
            return
        model.apply(db, event)
    with ledger_projection(side, agent, apply=apply, batch_max=1) as projection:
        projection.start()
        with pytest.raises(herald.HeraldError) as caught:
            projection.wait(published[-1][0], WAIT)
        assert "PostgreSQL aborted the transaction" in str(caught.value)
        assert projection.status().position == bad_seq - 1
    assert dump(side.query) == expected(published[:20])


def test_a_live_projection_goes_on_across_a_broker_restart(sqlite_side, agents, broker):
    agent = agents()
    projection = ledger_projection(sqlite_side, agent)
    projection.start()
    first = publish_changes(agents("publisher"), some_changes(50))
    projection.wait(first[-1][0], WAIT)
    assert broker.stop() is None                # SIGTERM, then the same ports again
    broker.start()
    later = publish_changes(agents("publisher-2"), some_changes(50, 50))
    status = projection.wait(later[-1][0], WAIT)
    assert status.state != "failed" and status.applied == 100
    projection.close()
    assert dump(sqlite_side.query) == expected(first + later)

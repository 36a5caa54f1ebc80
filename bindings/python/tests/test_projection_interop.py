"""test_projection_interop - a read model built by C is continued by Python, and back

docs/projections.md: the C library (libherald_projection) and herald.projection
keep their position in the same table, so either continues what the other
built.  examples/orders_view (C) projects OrderPlaced events of orders.*
into `ordered (sku, units, orders)` of a SQLite file under the name
"orders-view"; here the same projection in Python (the same table, the
same apply) takes over from the C one's position, then the C one takes
over from Python's.  Each event must be counted exactly once: units and
orders are sums.  Skipped when this build has no examples/orders_view
(a tree without libherald_projection).
"""

import os
import signal
import sqlite3
import subprocess

import pytest

import herald
from herald.projection import SQLiteProjection
from conftest import BUILDDIR, wait_for

ORDERS_VIEW = BUILDDIR / "examples" / "orders_view"


def setup_view(db):
    db.execute("CREATE TABLE IF NOT EXISTS ordered (sku TEXT PRIMARY KEY, "
               "units INTEGER NOT NULL, orders INTEGER NOT NULL)")


def apply_view(db, event):
    """examples/orders_view.c's s_apply, in Python."""
    if event.type != "OrderPlaced":
        return
    order = event.json()
    db.execute("INSERT INTO ordered (sku, units, orders) VALUES (?, ?, 1) ON CONFLICT (sku) "
               "DO UPDATE SET units = units + excluded.units, orders = orders + 1",
               (order["sku"], order["qty"]))


def place(agent, first, count):
    futures = [agent.publish_async("orders.%d" % n, {"sku": "S%d" % (n % 5), "qty": 1 + n % 3},
                                   type="OrderPlaced") for n in range(first, first + count)]
    agent.flush(30)
    return futures[-1].result().seq


def position(path):
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT seq FROM herald_projection WHERE name = 'orders-view'"
                           ).fetchone()
        return row[0] if row else 0
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def c_projects(broker, path, up_to, log_path):
    """Run examples/orders_view until its position reaches up_to, then Ctrl-C."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(ORDERS_VIEW), "--api", broker.api, "--db", path],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: position(path) >= up_to or proc.poll() is not None,
                     what="orders_view at seq %d" % up_to)
            assert proc.poll() is None, open(log_path).read()
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    assert proc.returncode == 0, open(log_path).read()


@pytest.mark.skipif(not os.access(str(ORDERS_VIEW), os.X_OK),
                    reason="no examples/orders_view in this build (libherald_projection)")
def test_c_and_python_continue_each_others_read_model(broker, tmp_path):
    path = str(tmp_path / "orders-view.db")
    with herald.Agent("orders", state_dir=None, api=broker.api,
                      fanout=broker.fanout) as agent:
        first = place(agent, 0, 300)
        c_projects(broker, path, first, tmp_path / "c-1.log")
        second = place(agent, 300, 300)
        with SQLiteProjection(agent, "orders-view", path, prefixes="orders.",
                              setup=setup_view, apply=apply_view) as projection:
            assert projection.status().position == first        # where C stopped
            projection.start()
            status = projection.wait(second, 30)
            assert status.applied == 300 and status.skipped == 0
        third = place(agent, 600, 300)
        c_projects(broker, path, third, tmp_path / "c-2.log")
    want = {}
    for n in range(900):
        units, orders = want.get("S%d" % (n % 5), (0, 0))
        want["S%d" % (n % 5)] = (units + 1 + n % 3, orders + 1)
    conn = sqlite3.connect(path)
    try:
        got = {sku: (units, orders) for sku, units, orders in
               conn.execute("SELECT sku, units, orders FROM ordered")}
    finally:
        conn.close()
    assert got == want

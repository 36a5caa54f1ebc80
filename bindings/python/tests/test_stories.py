"""test_stories - examples/python/stories, the projection stories of docs/projections.md

Each story run as a reader runs it (the scripts as processes, against a
real heraldd), its output checked:
  (a) the inventory as a read model in SQLite, followed live;
  (b) the inventory at the end of each day, by temporal projection: the
      "days" published in phases, each closed by a DayClosed event whose
      ts (the broker's ingest time) is the day's end;
  (c) a wrong price corrected by a compensating event; the audit trail
      read back from the log; the price list as of before the correction;
  (d) OrderPlaced gained a field: the old (schema 1, downcaster) and the
      new (schema 2, upcaster) inventory services side by side;
  (e) the read model's database lost: deleted, built again, identical.
"""

import glob
import os
import re
import signal
import subprocess
import sys
import time

from conftest import BUILDDIR, PACKAGE_ROOT, SOURCE_ROOT

STORIES = SOURCE_ROOT / "examples" / "python" / "stories"


def env():
    return dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT), HERALD_BUILDDIR=str(BUILDDIR),
                PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")


def run(broker, script, *args):
    """Run a story script to its end; its stdout (exit 0 required)."""
    done = subprocess.run([sys.executable, str(STORIES / script), "--api", broker.api]
                          + [str(a) for a in args], env=env(), capture_output=True,
                          timeout=120)
    out = done.stdout.decode()
    assert done.returncode == 0, "%s %s: exit %d\n%s%s" % (
        script, " ".join(map(str, args)), done.returncode, out, done.stderr.decode())
    return out


def shop(broker, *args):
    return run(broker, "shop.py", *args)


def rows(out):
    """The table lines of a view's output, spaces squeezed."""
    return [" ".join(line.split()) for line in out.splitlines() if line.startswith("  ")]


class Follower:
    """A view started with --follow, in the background."""

    def __init__(self, broker, script, log_path, *args):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(STORIES / script), "--api",
                                      broker.api, "--follow"] + [str(a) for a in args],
                                     env=env(), stdout=self.log, stderr=subprocess.STDOUT)

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, text, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in " ".join(self.output().split()):
                return
            assert self.proc.poll() is None, "exited %s:\n%s" % (self.proc.returncode,
                                                                  self.output())
            time.sleep(0.05)
        raise AssertionError("%r not in:\n%s" % (text, self.output()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def test_a_inventory_as_a_read_model(broker, tmp_path):
    db = tmp_path / "inventory.db"
    assert shop(broker, "receive", "A7", 10) == "StockReceived 10 x A7: seq 1\n"
    shop(broker, "receive", "B2", 5)
    shop(broker, "sell", "A7", 2)
    out = run(broker, "inventory_view.py", "--db", db)
    assert out.splitlines()[0] == "inventory now (position: seq 3)"
    assert rows(out) == ["A7 on hand 8 received 10 sold 2", "B2 on hand 5 received 5 sold 0"]
    follower = Follower(broker, "inventory_view.py", tmp_path / "follow.log", "--db", db)
    try:
        follower.wait_for("inventory now (position: seq 3)")
        shop(broker, "sell", "B2", 4)
        follower.wait_for("B2 on hand 1 received 5 sold 4")
    finally:
        assert follower.stop() == 0
    # started again, it goes on from its position: nothing counted twice
    shop(broker, "sell", "A7", 1)
    out = run(broker, "inventory_view.py", "--db", db)
    assert rows(out) == ["A7 on hand 7 received 10 sold 3", "B2 on hand 1 received 5 sold 4"]


def test_b_inventory_at_the_end_of_each_day(broker, tmp_path):
    ends = []
    for day in ([("receive", "A7", 10), ("sell", "A7", 2)],
                [("sell", "A7", 5), ("receive", "B2", 4)]):
        for command in day:
            shop(broker, *command)
        closed = shop(broker, "close-day")
        match = re.match(r"day closed at (\S+): seq (\d+), until_ts (\d+)$", closed.strip())
        assert match, closed
        ends.append((match.group(1), int(match.group(3))))
    shop(broker, "sell", "A7", 1)                   # day 3, not closed
    day1 = run(broker, "inventory_view.py", "--db", tmp_path / "day1.db", "--until",
               ends[0][1])
    assert day1.splitlines()[0] == "inventory as of %s (position: seq 2)" % ends[0][0]
    assert rows(day1) == ["A7 on hand 8 received 10 sold 2"]
    day2 = run(broker, "inventory_view.py", "--db", tmp_path / "day2.db", "--until",
               ends[1][0])                          # the ISO form of the same instant
    assert rows(day2) == ["A7 on hand 3 received 10 sold 7", "B2 on hand 4 received 4 sold 0"]
    now = run(broker, "inventory_view.py", "--db", tmp_path / "now.db")
    assert rows(now) == ["A7 on hand 2 received 10 sold 8", "B2 on hand 4 received 4 sold 0"]
    # an instant's database answers for that instant only
    refused = subprocess.run([sys.executable, str(STORIES / "inventory_view.py"), "--api",
                              broker.api, "--db", str(tmp_path / "day1.db")], env=env(),
                             capture_output=True, timeout=60)
    assert refused.returncode != 0
    assert b"rebuild it, or use another name or database" in refused.stderr


def test_c_a_wrong_price_corrected_by_a_compensating_event(broker, tmp_path):
    shop(broker, "price", "A7", "0.99", "--by", "alice")
    shop(broker, "price", "A7", "9.99", "--by", "bob")          # the mistake
    shop(broker, "price", "B2", "4.50", "--by", "alice")
    shop(broker, "correct", "A7", "0.99", "--by", "carol", "--reason", "typo, 9.99 for 0.99")
    out = run(broker, "prices_view.py", "--db", tmp_path / "prices.db")
    assert out.splitlines()[0] == "prices now (position: seq 4)"
    assert rows(out) == ["A7 0.99 set by carol at seq 4 (1 correction)",
                         "B2 4.50 set by alice at seq 3"]
    audit = run(broker, "prices_view.py", "--audit", "A7").splitlines()
    assert len(audit) == 3
    trail = [re.sub(r"\s+", " ", re.sub(r"\S+Z", "TIME", line)) for line in audit]
    assert trail == ["seq 1 TIME PriceSet A7 0.99 by alice",
                     "seq 2 TIME PriceSet A7 9.99 by bob",
                     "seq 4 TIME PriceCorrected A7 0.99 by carol: typo, 9.99 for 0.99 "
                     "(was 9.99)"]
    # what the customers saw between the mistake and its correction
    mistake_at = audit[1].split()[2]
    then = run(broker, "prices_view.py", "--db", tmp_path / "then.db", "--until", mistake_at)
    assert rows(then) == ["A7 9.99 set by bob at seq 2"]


def test_d_old_and_new_services_read_events_that_gained_a_field(broker, tmp_path):
    shop(broker, "order", "o1", "A7", 2, "--schema", 1)         # last year's service
    shop(broker, "order", "o2", "B2", 1, "--schema", 1)
    shop(broker, "order", "o3", "A7", 3, "--warehouse", "east")  # today's: schema 2
    shop(broker, "order", "o4", "B2", 2)
    old = Follower(broker, "order_stock.py", tmp_path / "v1.log", "--version", 1, "--db",
                   tmp_path / "v1.db")
    new = Follower(broker, "order_stock.py", tmp_path / "v2.log", "--version", 2, "--db",
                   tmp_path / "v2.db")
    try:
        old.wait_for("A7 5 in 2 orders B2 3 in 2 orders")
        new.wait_for("east/A7 3 in 1 order main/A7 2 in 1 order main/B2 3 in 2 orders")
        shop(broker, "order", "o5", "A7", 1, "--warehouse", "east")
        old.wait_for("A7 6 in 3 orders")
        new.wait_for("east/A7 4 in 2 orders")
    finally:
        assert old.stop() == 0 and new.stop() == 0


def test_e_a_lost_database_is_built_again(broker, tmp_path):
    db = tmp_path / "inventory.db"
    shop(broker, "receive", "A7", 10)
    shop(broker, "sell", "A7", 3)
    # more events at once (shop.py publishes one per run; this is quicker)
    import herald
    with herald.Agent("bulk", state_dir=None, api=broker.api) as agent:
        for index in range(500):
            agent.publish_async("stock.S%d" % (index % 9),
                                {"sku": "S%d" % (index % 9), "qty": 1 + index % 5},
                                type="StockReceived" if index % 4 else "StockSold")
        agent.flush(30)
    before = run(broker, "inventory_view.py", "--db", db)
    assert "position: seq 502" in before
    for path in glob.glob(str(db) + "*"):                  # the file, -wal, -shm
        os.unlink(path)
    assert not glob.glob(str(db) + "*")
    after = run(broker, "inventory_view.py", "--db", db)
    assert after == before
    rebuilt = run(broker, "inventory_view.py", "--db", db, "--rebuild")
    assert rebuilt == "rebuilding %s from seq 1\n" % db + before


def test_each_story_script_says_its_usage():
    for script in ("shop.py", "inventory_view.py", "prices_view.py", "order_stock.py"):
        helped = subprocess.run([sys.executable, str(STORIES / script), "--help"], env=env(),
                                capture_output=True, timeout=60)
        assert helped.returncode == 0 and b"usage: " + script.encode() in helped.stdout
        wrong = subprocess.run([sys.executable, str(STORIES / script), "--no-such-option"],
                               env=env(), capture_output=True, timeout=60)
        assert wrong.returncode == 64, (script, wrong.stderr)
        assert b"unrecognized arguments" in wrong.stderr or b"required" in wrong.stderr

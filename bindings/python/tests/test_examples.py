"""test_examples - examples/python: the order and inventory services

The walk-through of examples/README.md with the Python services: orders
placed, stock reserved or rejected, reactions confirmed or cancelled;
the inventory stopped and restarted handles exactly the orders placed
while it was away.
"""

import os
import signal
import subprocess
import sys
import time

from conftest import BUILDDIR, PACKAGE_ROOT, SOURCE_ROOT

EXAMPLES = SOURCE_ROOT / "examples" / "python"


def env():
    e = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT), HERALD_BUILDDIR=str(BUILDDIR),
             PYTHONUNBUFFERED="1")
    return e


def orders(broker, tmp_path, *args):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "orders.py"), *args,
                           "--api", broker.api, "--state", str(tmp_path / "orders")],
                          env=env(), capture_output=True, timeout=60)
    return proc.returncode, proc.stdout.decode()


class Service:
    def __init__(self, argv, log_path):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env(), stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, text, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            time.sleep(0.05)
        raise AssertionError("%r not in:\n%s" % (text, self.output()))

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        status = self.proc.wait(30)
        self.log.close()
        return status


def test_orders_and_inventory_tell_the_story(broker, tmp_path):
    inventory_argv = [sys.executable, str(EXAMPLES / "inventory.py"), "--api", broker.api,
                      "--state", str(tmp_path / "inventory")]
    inventory = Service(inventory_argv, tmp_path / "inventory.log")
    watch = Service([sys.executable, str(EXAMPLES / "orders.py"), "watch", "--api",
                     broker.api, "--state", str(tmp_path / "orders-watch")],
                    tmp_path / "watch.log")
    try:
        inventory.wait_for("reserving stock")
        assert orders(broker, tmp_path, "place", "o1", "A7", "2") == (0, "order o1 placed: "
                                                                        "seq 1\n")
        assert orders(broker, tmp_path, "place", "o2", "A7", "9")[0] == 0
        rc, out = orders(broker, tmp_path, "place", "o1", "A7", "1")
        assert rc == 1 and "exists already (version" in out
        inventory.wait_for("order o1, 2 x A7: reserved (8 left)")
        inventory.wait_for("order o2, 9 x A7: REJECTED (8 left)")
        watch.wait_for("order o1: confirmed")
        watch.wait_for("order o2: cancelled (no stock)")
        assert inventory.stop() == 0
        orders(broker, tmp_path, "place", "o3", "A7", "3")
        orders(broker, tmp_path, "place", "o4", "B2", "4")
        inventory = Service(inventory_argv, tmp_path / "inventory-2.log")
        inventory.wait_for("order o4, 4 x B2: reserved (6 left)")
        out = inventory.output()
        assert "state as of seq" in out and "order o3, 3 x A7: reserved (5 left)" in out
        assert "o1" not in out and "o2" not in out
        watch.wait_for("order o4: confirmed")
        rc, out = orders(broker, tmp_path, "show", "o3")
        assert "OrderPlaced" in out and "OrderConfirmed" in out
    finally:
        for service in (inventory, watch):
            if service.proc.poll() is None:
                assert service.stop() == 0, service.output()

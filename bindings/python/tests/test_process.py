"""test_process - the interpreter's exit with agents running, and installing

Each scenario is a child /usr/bin/python3 that leaves an agent running
(a handler mid-event, an iterator waiting for its loop, an asyncio agent
with a coroutine handler pending, publishes in flight) and simply ends:
it must exit 0, promptly, with no crash and no "Fatal Python error".
Then: the events it was handling are delivered again to the next agent
(nothing checkpointed that was not handled).  Last, the package installs
with pip offline (no index: the package's own build backend needs nothing).
"""

import os
import shutil
import subprocess
import sys
import textwrap

import herald
from conftest import BUILDDIR, PACKAGE_ROOT, wait_for

EXIT_SECONDS = 30


def run_child(code, broker, state_dir, env_extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_ROOT)
    env["HERALD_BUILDDIR"] = str(BUILDDIR)
    env["API"], env["FANOUT"], env["STATE"] = broker.api, broker.fanout, state_dir
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, timeout=EXIT_SECONDS)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, "child exited %d:\n%s" % (proc.returncode, stderr)
    assert "Fatal Python error" not in stderr, stderr
    return proc.stdout.decode(), stderr


PRELUDE = """
import os, sys, time, threading
import herald
agent = herald.Agent("child", api=os.environ["API"], fanout=os.environ["FANOUT"],
                     state_dir=os.environ["STATE"], heartbeat=0.2)
"""


def test_exit_with_a_handler_running_and_publishes_in_flight(broker, state_dir):
    run_child(PRELUDE + """
for i in range(50):
    agent.publish("busy.%d" % i, b"x")
started = threading.Event()
def slow(event):
    started.set()
    time.sleep(0.5)
agent.subscribe("busy.", slow, name="busy")
started.wait(20)
for i in range(1000):
    agent.publish_async("more.%d" % i, b"y")
print("leaving with the agent open")
""", broker, state_dir)
    # The next agent resumes where the first stopped: nothing lost or repeated
    with herald.Agent("next", api=broker.api, fanout=broker.fanout,
                      state_dir=state_dir) as agent:
        seen = []
        agent.subscribe("busy.", lambda e: seen.append(e.seq), name="busy")
        wait_for(lambda: seen and seen[-1] == 50)
        assert seen == sorted(set(seen)) and 1 not in seen and len(seen) < 50


def test_exit_with_an_iterator_waiting_for_its_loop(broker, state_dir):
    run_child(PRELUDE + """
for i in range(5):
    agent.publish("it.%d" % i, b"x")
events = agent.events("it.", name="it")
first = next(events)
assert first.seq == 1
# the handler now waits for the loop to ask for the next event: exit here
""", broker, state_dir)
    with herald.Agent("next", api=broker.api, fanout=broker.fanout,
                      state_dir=state_dir) as agent:
        again = next(iter(agent.events("it.", name="it", timeout=10)))
        assert again.seq == 1 and again.redelivered


def test_exit_with_an_asyncio_agent_and_a_pending_coroutine_handler(broker, state_dir):
    run_child("""
import asyncio, os
import herald
async def main():
    agent = herald.AsyncAgent("child", api=os.environ["API"], fanout=os.environ["FANOUT"],
                              state_dir=os.environ["STATE"], heartbeat=0.2)
    await agent.publish("a.1", b"")
    started = asyncio.Event()
    async def forever(event):
        started.set()
        await asyncio.sleep(3600)
    agent.subscribe("a.", forever, name="a")
    await asyncio.wait_for(started.wait(), 20)
    # the loop ends with the agent open and its handler deferred
asyncio.run(main())
""", broker, state_dir)


def test_exit_from_a_signal_with_an_agent_open(broker, state_dir):
    stdout, _ = run_child(PRELUDE + """
import signal
agent.subscribe("s.", lambda e: time.sleep(0.2), name="s")
for i in range(20):
    agent.publish_async("s.%d" % i, b"")
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(30)
""", broker, state_dir)


def test_pip_installs_the_package_offline(tmp_path):
    # From a copy, so that make check writes nothing into the source tree.
    # With build isolation, as plain `pip install ./bindings/python` does:
    # the package's own backend (_build/) needs nothing from an index, so
    # --no-index (no network) must still work.
    source = tmp_path / "src"
    shutil.copytree(PACKAGE_ROOT, source,
                    ignore=shutil.ignore_patterns("tests", "build", "*.egg-info",
                                                  "__pycache__"))
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index",
         "--no-deps", "--disable-pip-version-check", "--no-cache-dir", "--quiet",
         "--target", str(target), str(source)],
        capture_output=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    assert (target / "herald" / "__init__.py").exists()
    assert (target / "herald" / "py.typed").exists()
    env = dict(os.environ, PYTHONPATH=str(target),
               HERALD_LIB=str(BUILDDIR / ".libs" / "libherald.so.1"))
    env.pop("HERALD_BUILDDIR", None)
    check = subprocess.run(
        [sys.executable, "-c", "import herald, sys; print(herald.__file__, "
         "herald.library_version)"], env=env, capture_output=True, cwd=str(tmp_path),
        timeout=60)
    assert check.returncode == 0, check.stderr.decode()
    assert str(target) in check.stdout.decode()

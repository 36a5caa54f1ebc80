#!/usr/bin/python3
"""test_heraldd_daemon - heraldd under a service manager (issue 17)

What systemd sees of heraldd, with the real parts and no systemd: the test
binds the unix datagram socket systemd would (NOTIFY_SOCKET) and reads
what heraldd sends, and gives heraldd a stderr file whose device and inode
it names in JOURNAL_STREAM, as systemd does for a service logging to the
journal.

  - READY=1 arrives once, and when it does the broker answers at once; a
    start that fails (api port in use; a cluster node whose Raft port is
    taken, which fails after the broker loop started) never says READY=1.
  - SIGHUP: RELOADING=1 then READY=1; log-level from the --config file
    applied (debug lines follow), logged; a setting that cannot change
    live is named; a file that no longer parses changes nothing; the
    broker serves throughout (before issue 17 SIGHUP ended heraldd when
    security was off).
  - SIGTERM: STOPPING=1, then exit 0.
  - Under the journal every line starts with its priority (<3> error, <4>
    warn, <6> info, <7> debug), a usage error too (exit 64); with another
    file's JOURNAL_STREAM (a redirected stderr) lines are plain.

Every process it starts it stops (finally: SIGKILL); every wait is bounded.
Run by make check (HERALD_BUILDDIR); prints "ok - ..." per check and
"N passed, M failed" last; exit 1 on any failure.
"""

import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
BUILD = pathlib.Path(os.environ.get("HERALD_BUILDDIR", HERE.parent))
HERALDD = str(BUILD / "broker" / "heraldd")
HERALD = str(BUILD / "tools" / "herald")

passed = 0
failed = 0
procs = []


def check(what, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok - " + what)
    else:
        failed += 1
        print("not ok - " + what + (" (" + detail + ")" if detail else ""))


def free_port():
    """A TCP port free on 127.0.0.1 now, below the ephemeral range."""
    for _ in range(200):
        port = random.randrange(20000, 32768)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


class Notify:
    """The service manager's end of NOTIFY_SOCKET: a unix datagram socket."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.got = []               # every datagram, in order

    def next(self, timeout):
        """The next datagram's text, or None after timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            return None
        self.got.append(data)
        return data

    def wait_for(self, key, timeout, proc=None):
        """Datagrams until one has the line KEY; it, or None (timeout, or proc ended)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.next(0.1)
            if data is not None and key in data.split("\n"):
                return data
            if data is None and proc is not None and proc.poll() is not None:
                data = self.next(0.2)       # what it sent just before it ended
                if data is not None and key in data.split("\n"):
                    return data
                return None
        return None

    def close(self):
        self.sock.close()


def start(args, tmp, name, notify=None, journal=True, extra_env=None):
    """heraldd ARGS, stderr to tmp/NAME.err (the 'journal' when journal)."""
    err_path = tmp / (name + ".err")
    err = open(err_path, "w")
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    env.pop("NOTIFY_SOCKET", None)
    if notify:
        env["NOTIFY_SOCKET"] = notify.path
    if journal:
        info = os.fstat(err.fileno())
        env["JOURNAL_STREAM"] = "%d:%d" % (info.st_dev, info.st_ino)
    env.update(extra_env or {})
    proc = subprocess.Popen([HERALDD] + args, stdout=subprocess.DEVNULL, stderr=err, env=env,
                            cwd=str(tmp))
    err.close()
    procs.append(proc)
    return proc, err_path


def status(api, timeout_ms=2000):
    """herald status against api: its exit status."""
    return subprocess.run([HERALD, "--endpoint", api, "--timeout", str(timeout_ms), "status"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=30).returncode


def wait_line(path, pattern, timeout=10):
    """True once the file has a line matching pattern (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, path.read_text(), re.M):
            return True
        time.sleep(0.05)
    return False


def stop(proc, timeout=30):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def test_lifecycle(tmp):
    """READY, SIGHUP's reload, STOPPING: one broker, under the journal."""
    notify = Notify(str(tmp / "notify"))
    api = "tcp://127.0.0.1:%d" % free_port()
    fanout = "tcp://127.0.0.1:%d" % free_port()
    conf = tmp / "heraldd.conf"
    conf.write_text("log-level = info\nmax-batch = 1000\n")
    proc, err = start(["--config", str(conf), "--data-dir", str(tmp / "data"), "--api", api,
                       "--fanout", fanout], tmp, "life", notify)
    ready = notify.wait_for("READY=1", 30, proc)
    answered = status(api, 1000) == 0 if ready else False
    check("READY=1 arrives", ready is not None, "got %r" % notify.got)
    check("at READY=1 the broker answers at once", answered)
    check("READY=1 is the first thing said, with STATUS=serving",
          len(notify.got) == 1 and "STATUS=serving api " + api in notify.got[0], repr(notify.got))

    #  SIGHUP: log level from the file, applied live
    conf.write_text("log-level = debug\nmax-batch = 1000\n")
    before = len(notify.got)
    proc.send_signal(signal.SIGHUP)
    again = notify.wait_for("READY=1", 10, proc)
    said = notify.got[before:]
    check("SIGHUP: RELOADING=1, then READY=1",
          again is not None and any("RELOADING=1" in d.split("\n") for d in said[:1]), repr(said))
    check("SIGHUP: the new log level is logged",
          wait_line(err, r"^<6>heraldd: info: SIGHUP: log-level debug \(was info\)$"))
    check("SIGHUP: heraldd still runs and answers", proc.poll() is None and status(api) == 0)
    check("SIGHUP: debug lines follow (the STATUS request just made)",
          wait_line(err, r"^<7>heraldd: debug: peer [0-9a-f]+: STATUS rid"))

    #  A setting that cannot change live: named, and not applied
    conf.write_text("log-level = debug\nmax-batch = 7\n")
    proc.send_signal(signal.SIGHUP)
    check("SIGHUP: a setting that needs a restart is named in a warn line",
          wait_line(err, r"^<4>heraldd: warn: SIGHUP: changed, in force at the next start "
                    r"only: max-batch$"))

    #  A file that no longer parses: nothing changes
    conf.write_text("log-level = info\nmax-batch = zero\n")
    proc.send_signal(signal.SIGHUP)
    check("SIGHUP: a file that does not parse is an error line naming FILE:LINE",
          wait_line(err, r"^<3>heraldd: error: SIGHUP: the settings do not parse, nothing "
                    r"changed: .*heraldd.conf:2: max-batch"))
    marker = len(err.read_text())
    check("SIGHUP: ... and heraldd still runs on its settings", status(api) == 0)
    check("SIGHUP: ... the level stays debug",
          wait_line(err, r"^<7>heraldd: debug: peer [0-9a-f]+: STATUS rid") and
          "debug: peer" in err.read_text()[marker:])

    #  SIGTERM: STOPPING=1, then a clean exit
    before = len(notify.got)
    proc.send_signal(signal.SIGTERM)
    stopping = notify.wait_for("STOPPING=1", 20)
    try:
        code = proc.wait(30)                # a second SIGTERM would stop it at once, exit 1
    except subprocess.TimeoutExpired:
        code = None
    check("SIGTERM: STOPPING=1", stopping is not None, repr(notify.got[before:]))
    check("SIGTERM: exit 0", code == 0, "exit %s" % code)
    check("READY=1 once at start and once after each of the 3 SIGHUPs",
          sum("READY=1" in d.split("\n") for d in notify.got) == 4, repr(notify.got))
    text = err.read_text()
    plain = [line for line in text.splitlines() if not re.match(r"<[3467]>heraldd: ", line)]
    check("under the journal every line has a priority prefix", not plain, repr(plain[:3]))
    check("... info is <6>", "<6>heraldd: info: node " in text)
    notify.close()


def test_failed_starts(tmp):
    """A start that fails never says READY=1."""
    notify = Notify(str(tmp / "notify2"))
    #  the api port held: exit 1 before anything is opened
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = "tcp://127.0.0.1:%d" % holder.getsockname()[1]
    #  JOURNAL_STREAM naming another file: stderr was redirected, plain lines
    other = tmp / "other"
    other.write_text("")
    info = os.stat(other)
    proc, err = start(["--data-dir", str(tmp / "busy"), "--api", busy,
                       "--fanout", "tcp://127.0.0.1:%d" % free_port()], tmp, "busy", notify,
                      journal=False,
                      extra_env={"JOURNAL_STREAM": "%d:%d" % (info.st_dev, info.st_ino)})
    code = proc.wait(30)
    ready = notify.wait_for("READY=1", 0.5)
    check("api port in use: exit 1", code == 1, "exit %s" % code)
    check("api port in use: no READY=1", ready is None, repr(notify.got))
    text = err.read_text()
    check("another file's JOURNAL_STREAM: plain lines",
          text.startswith("heraldd: ") and "<3>" not in text, text[:200])

    #  a cluster node whose Raft address is taken: the broker loop has
    #  started (it logs "serving") when Raft fails to listen
    raft = socket.socket()
    raft.bind(("127.0.0.1", 0))
    raft.listen()
    peer = "n1,127.0.0.1:%d,tcp://127.0.0.1:%d,tcp://127.0.0.1:%d" % (
        raft.getsockname()[1], free_port(), free_port())
    proc, err = start(["--data-dir", str(tmp / "node"), "--node", "n1", "--peer", peer,
                       "--cluster-state", "new"], tmp, "raft_busy", notify)
    ready = notify.wait_for("READY=1", 30, proc)
    code = proc.wait(30)
    check("a cluster node whose Raft cannot start: exit 1", code == 1, "exit %s" % code)
    check("a cluster node whose Raft cannot start: no READY=1", ready is None, repr(notify.got))
    check("... its error line is <3>",
          wait_line(err, r"^<3>heraldd: error: cannot start the Raft node"))
    holder.close()
    raft.close()

    #  a new three-node cluster: a node answers STATUS while it waits for
    #  its peers to bootstrap, but is READY only once its Raft node runs
    names = ["n1", "n2", "n3"]
    apis = ["tcp://127.0.0.1:%d" % free_port() for _ in names]
    peers = ["%s,127.0.0.1:%d,%s,tcp://127.0.0.1:%d" % (name, free_port(), api, free_port())
             for name, api in zip(names, apis)]
    sockets = [Notify(str(tmp / ("notify_" + name))) for name in names]
    nodes = []

    def node(index):
        args = ["--data-dir", str(tmp / names[index]), "--node", names[index],
                "--cluster-state", "new", "--election-ms", "300", "--raft-heartbeat-ms", "50"]
        for entry in peers:
            args += ["--peer", entry]
        nodes.append(start(args, tmp, names[index], sockets[index])[0])

    node(0)
    answers = False
    deadline = time.monotonic() + 20
    while not answers and time.monotonic() < deadline and nodes[0].poll() is None:
        answers = status(apis[0], 200) == 0
    check("a cluster node waiting for its peers answers STATUS", answers)
    early = sockets[0].wait_for("READY=1", 1.0)
    check("... and is not READY while it waits (its Raft node does not run)",
          early is None, repr(sockets[0].got))
    node(1)
    node(2)
    ready = [sock.wait_for("READY=1", 30, proc) for sock, proc in zip(sockets, nodes)]
    check("each node of the cluster: READY=1 once its Raft node runs",
          all(ready) and all("raft: node %s" % name in (tmp / (name + ".err")).read_text()
                             for name in names), repr([s.got for s in sockets]))
    check("each node at READY=1 answers", all(status(api) == 0 for api in apis))
    codes = [stop(proc) for proc in nodes]
    check("each node: SIGTERM exits 0", codes == [0, 0, 0], repr(codes))
    for sock in sockets:
        sock.close()

    #  a usage error under the journal: <3>, exit 64
    proc, err = start(["--bogus"], tmp, "usage", notify)
    code = proc.wait(30)
    text = err.read_text()
    check("a usage error under the journal: exit 64", code == 64, "exit %s" % code)
    check("a usage error under the journal: <3>heraldd: ...",
          text.startswith("<3>heraldd: ") and "see heraldd --help" in text, text[:200])
    notify.close()


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="heraldd_daemon."))
    try:
        test_lifecycle(tmp)
        test_failed_starts(tmp)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""pgserver - a real PostgreSQL server for the Python tests

tests/pgserver.sh (its header says how and why) starts the server in a
fresh directory of /tmp on a free port, 127.0.0.1 only.  A watcher
(`pgserver.sh watch DIR`, in a session of its own, its stdin a pipe only
this process holds) stops it and removes the directory when this process
ends, whatever the way (a crash, kill -9); stop() does so at once.

In a test module:

    from pgserver import pg_server, pg_database   # the fixtures

    def test_x(pg_database):            # a fresh database, its conninfo
        conn = psycopg2.connect(pg_database)

pg_server (module scope: one server per test module) is a PgServer:
.conninfo, .database(name) -> conninfo of a fresh database, .query(sql),
and .stop_server() / .kill() / .restart() for tests that take the server
down on purpose (same data, same port: same conninfo).
"""

import os
import pathlib
import re
import signal
import subprocess
import tempfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
SOURCE_ROOT = pathlib.Path(os.environ.get("HERALD_SRCDIR") or HERE.parent.parent.parent)
SCRIPT = SOURCE_ROOT / "tests" / "pgserver.sh"


class PgServerError(RuntimeError):
    pass


class PgServer:
    def __init__(self):
        self.dir = None
        self.conninfo = None
        self.port = None
        self._watcher = None
        self._databases = 0

    def _run(self, command, timeout=120):
        # In a session of its own, so that a script that does not come back
        # in time is killed with what it started (initdb, postgres -V):
        # subprocess.run's timeout kills the script alone
        proc = subprocess.Popen([str(SCRIPT), command, self.dir], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise PgServerError("pgserver.sh %s %s did not end within %d s: killed with its "
                                "process group" % (command, self.dir, timeout))
        out = stdout.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise PgServerError("pgserver.sh %s %s: %s" % (command, self.dir, out))
        return out

    def start(self):
        # /tmp, not pytest's tmp_path: the user postgres must reach it (as
        # root) and the socket path must stay short
        self.dir = tempfile.mkdtemp(prefix="herald-pg-", dir="/tmp")
        read_end, write_end = os.pipe()
        os.set_inheritable(write_end, False)
        self._watcher = subprocess.Popen([str(SCRIPT), "watch", self.dir], stdin=read_end,
                                         stdout=subprocess.DEVNULL, start_new_session=True)
        os.close(read_end)
        self._watch_fd = write_end
        self._started()
        return self

    def _started(self):
        out = self._run("start")
        line = out.splitlines()[-1] if out else ""
        match = re.match(r"host=\S+ port=(\d+) ", line)
        if not match:
            raise PgServerError("pgserver.sh start said: %s" % out)
        self.conninfo = line
        self.port = int(match.group(1))

    def stop_server(self):
        """Stop it cleanly, keeping its data (restart() starts it again)."""
        self._run("stop")

    def kill(self):
        """kill -9 the server (a crash: the next start recovers)."""
        self._run("kill")

    def restart(self):
        self._started()

    def stop(self):
        """Stop it for good and remove its directory."""
        if self._watcher is None:
            return
        os.close(self._watch_fd)
        try:
            self._watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._watcher.kill()
            self._watcher.wait()
            self._run("stop")
        self._watcher = None

    def query(self, sql, conninfo=None):
        """Run sql; the rows of its last statement (a list of tuples)."""
        import psycopg2
        conn = psycopg2.connect(conninfo or self.conninfo)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else []
        finally:
            conn.close()

    def database(self, name=None):
        """A fresh database (dropped first when it exists): its conninfo."""
        if name is None:
            self._databases += 1
            name = "test_%d_%d" % (os.getpid(), self._databases)
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise ValueError("database name: letters, digits and _ only")
        self.query('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
        self.query('CREATE DATABASE "%s"' % name)
        return "host=127.0.0.1 port=%d dbname=%s user=herald" % (self.port, name)


@pytest.fixture(scope="module")
def pg_server():
    server = PgServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_database(pg_server):
    return pg_server.database()

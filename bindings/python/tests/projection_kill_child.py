"""projection_kill_child - the process test_projection_kill.py kills

    projection_kill_child.py sqlite PATH API FANOUT
    projection_kill_child.py postgres DSN API FANOUT

A zygote: it imports herald, sqlite3 and psycopg2 once (a third of a
second), makes no agent and starts no thread, then forks one worker per
command read on stdin, so that hundreds of workers can be killed within
seconds.  Commands (one line each; one answer line on stdout):

    run BATCH_MAX          fork a worker projecting until it is killed
                           -> "pid N"
    final TARGET BATCH_MAX fork a worker that projects up to seq TARGET,
                           closes, and exits 0 -> "pid N"
    reap N                 wait for worker N -> "status S" (os.waitpid's)

The killer kills a worker by its pid (SIGKILL) before asking to reap it:
until reaped, that pid cannot be another process's.  A worker makes a new
herald.Agent (state_dir None: a projection keeps its position in its
database) and a projection of the ledger model (projection_model.py) named
"stock" on prefix "stock.", starts it, and waits.  A worker whose
projection fails says why on stderr and exits 3.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import herald                                   # noqa: E402
from herald.projection import PostgresProjection, SQLiteProjection   # noqa: E402
from projection_model import Ledger             # noqa: E402

try:                                            # loaded before any fork
    import psycopg2                             # noqa: E402,F401
except ImportError:                             # pragma: no cover
    psycopg2 = None


def work(kind, where, api, fanout, batch_max, target):
    agent = herald.Agent("kill-worker", state_dir=None, api=api, fanout=fanout,
                         heartbeat=0.2)
    model = Ledger("?" if kind == "sqlite" else "%s")
    cls = SQLiteProjection if kind == "sqlite" else PostgresProjection
    projection = cls(agent, "stock", where, prefixes="stock.", setup=model.setup,
                     reset=model.reset, apply=model.apply, batch_max=batch_max)
    projection.start(timeout=10)
    if target:
        projection.wait(target, 120)
        projection.close()
        agent.close()
        return 0
    deadline = time.monotonic() + 120           # the killer comes long before
    while time.monotonic() < deadline:
        try:
            projection.wait(2 ** 62, 0.5)
        except herald.TimeoutError:
            continue
    return 4


def main():
    kind, where, api, fanout = sys.argv[1:5]
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] in ("run", "final"):
            target = int(words[1]) if words[0] == "final" else 0
            batch_max = int(words[-1])
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    status = work(kind, where, api, fanout, batch_max, target)
                except BaseException as exc:    # a failed projection: say why
                    sys.stderr.write("worker %d: %s: %s\n" % (os.getpid(),
                                                              type(exc).__name__, exc))
                    sys.stderr.flush()
                    status = 3
                os._exit(status)
            print("pid %d" % pid, flush=True)
        elif words[0] == "reap":
            _, status = os.waitpid(int(words[1]), 0)
            print("status %d" % status, flush=True)
        else:
            print("unknown command %r" % words[0], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

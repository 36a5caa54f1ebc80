"""_projection_db - what a projection needs of a database (SQLite, PostgreSQL).

Internal.  herald.projection drives a database only through a backend of
this module, as libherald_projection drives one through
agents/herald_projection_backend.h: connect, a write transaction that
excludes every other writer of the projection's row, the position table
(created when missing), its row read and written, commit and rollback.
Both write the same table, so a read model built by the C library is
continued by Python and the other way round:

    name        text primary key     the projection's name
    seq         64-bit integer       the last seq whose effects are committed
    lineage     64-bit integer       the broker's count of accepted losses then
    until_ts    64-bit integer       0: live; else the temporal instant (Unix ns)
    updated_ns  64-bit integer       Unix ns of the commit that wrote the row

Errors: :class:`Transient` when the same work may succeed later without
anyone changing anything (SQLite busy or locked; a PostgreSQL
serialization failure, deadlock, or lost connection, after which the
backend reconnects on its next begin).  Anything else the database raises
is passed on as it is.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from typing import Any, Optional, Tuple

Row = Tuple[int, int, int]                 # seq, lineage, until_ts

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class Transient(Exception):
    """A database error worth retrying (the batch is rolled back)."""


def checked_row(row: Any, table: str, name: str) -> Row:
    """(seq, lineage, until_ts) of a row; a negative or non-integer value
    was not written by Herald: CorruptStateError, as the C library says."""
    try:
        values = tuple(int(value) for value in row[:3])
    except (TypeError, ValueError):
        values = (-1,)
    if any(value < 0 for value in values):
        from .errors import CorruptStateError
        raise CorruptStateError("the row of projection %s in %s holds %r: it was not "
                                "written by Herald" % (name, table, tuple(row[:3])))
    return values                                                   # type: ignore[return-value]


def check_table(table: str) -> str:
    """A position table's name, as the C library takes it: 1-63 bytes of
    [A-Za-z0-9_], not starting with a digit.  Returned quoted, as the C
    library puts it in its statements (so "Views" is the same table for
    both, also in PostgreSQL, which would fold it to lower case unquoted)."""
    if not isinstance(table, str) or not _TABLE.match(table):
        raise ValueError("table: 1-63 characters of [A-Za-z0-9_], not starting with a "
                         "digit, not %r" % (table,))
    return '"%s"' % table


class SQLiteBackend:
    """SQLite through the standard library's sqlite3.

    The file is opened in WAL mode with synchronous=NORMAL: a process
    killed at any moment leaves the last committed transaction in place,
    and an operating-system crash or power loss at worst rolls back the
    last ones, effects and position together.  ``busy_timeout`` (seconds)
    is how long a statement waits for another writer before SQLite says
    busy (then the batch is retried with the agent's backoff)."""

    name = "sqlite"

    def __init__(self, path: Any, busy_timeout: float = 0.2):
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        self.path = os.fspath(path)
        if not self.path:
            raise ValueError("path: the SQLite file (created when missing)")
        self.busy_timeout = busy_timeout
        self.conn: Optional[sqlite3.Connection] = None

    def open(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                #  A file that cannot be in WAL (a read-only directory...) is
                #  still transactional in its rollback journal
                pass
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc) from exc
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:
                pass
            self.conn = None

    def transient(self, exc: BaseException) -> bool:
        """Whether exc (raised by the backend or by an apply function's
        statement) is worth retrying: busy or locked."""
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc).lower()
            return "locked" in text or "busy" in text
        return False

    def _translate(self, exc: BaseException) -> BaseException:
        if self.transient(exc):
            return Transient("sqlite: %s" % exc)
        return exc

    def begin(self) -> sqlite3.Connection:
        """BEGIN IMMEDIATE: the write lock now, not at the first write."""
        if self.conn is None:
            self.open()
        conn = self.conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        return conn

    def transaction_state(self, db: sqlite3.Connection) -> Optional[str]:
        """None while the transaction is open; else why it is not."""
        if db.in_transaction:
            return None
        return ("the transaction was ended by the projection's own function (or rolled "
                "back by SQLite after an error): never BEGIN, COMMIT or ROLLBACK in setup, "
                "reset or apply (the projection does)")

    def commit(self, db: sqlite3.Connection) -> None:
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def rollback(self, db: Any) -> None:
        conn = self.conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def run(self, db: sqlite3.Connection, sql: str, args: tuple = ()) -> Any:
        try:
            return db.execute(sql, args)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def table_ensure(self, db: Any, table: str) -> None:
        self.run(db, "CREATE TABLE IF NOT EXISTS %s (name TEXT PRIMARY KEY NOT NULL, "
                     "seq INTEGER NOT NULL, lineage INTEGER NOT NULL, "
                     "until_ts INTEGER NOT NULL, updated_ns INTEGER NOT NULL)" % table)

    def position_read(self, db: Any, table: str, name: str) -> Optional[Row]:
        row = self.run(db, "SELECT seq, lineage, until_ts FROM %s WHERE name = ?" % table,
                       (name,)).fetchone()
        return None if row is None else checked_row(row, table, name)

    def position_write(self, db: Any, table: str, name: str, row: Row) -> None:
        self.run(db, "INSERT INTO %s (name, seq, lineage, until_ts, updated_ns) "
                     "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                     "seq = excluded.seq, lineage = excluded.lineage, "
                     "until_ts = excluded.until_ts, updated_ns = excluded.updated_ns"
                 % table, (name, row[0], row[1], row[2], time.time_ns()))

    def position_create(self, db: Any, table: str, name: str, row: Row) -> None:
        """Insert the row unless it exists (the database is locked already)."""
        self.run(db, "INSERT INTO %s (name, seq, lineage, until_ts, updated_ns) "
                     "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING"
                 % table, (name, row[0], row[1], row[2], time.time_ns()))


# PostgreSQL SQLSTATE classes and codes retried: 08 connection exception,
# 40 transaction rollback (40001 serialization failure, 40P01 deadlock),
# 57P0x the server shutting down or restarting, 55P03 lock not available,
# 53300 too many connections
_PG_TRANSIENT_CLASSES = ("08", "40")
_PG_TRANSIENT_CODES = ("57P01", "57P02", "57P03", "55P03", "53300")


class PostgresBackend:
    """PostgreSQL through psycopg2 (Debian's python3-psycopg2).

    A transaction is psycopg2's (BEGIN before the first statement); the
    projection's advisory lock is taken, then its row is read ``FOR
    UPDATE``, as the C library does: every other writer of it waits until
    commit.  ``db`` for apply is a cursor of the
    connection.  A lost connection is transient: the next begin
    reconnects."""

    name = "postgres"

    def __init__(self, dsn: str, connect_timeout: Optional[float] = None):
        try:
            import psycopg2                     # noqa: F401
        except ImportError as exc:              # pragma: no cover - Debian has it
            from .errors import UnsupportedError
            raise UnsupportedError("PostgresProjection needs psycopg2 (Debian: apt-get "
                                   "install python3-psycopg2): %s" % exc) from exc
        if not isinstance(dsn, str):
            raise TypeError("dsn: a libpq connection string (str)")
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.conn: Any = None
        self.cursor: Any = None

    def transient(self, exc: BaseException) -> bool:
        """Whether exc (raised by the backend or by an apply function's
        statement) is worth retrying."""
        import psycopg2
        if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
            return True
        code = getattr(exc, "pgcode", None) or ""
        if code[:2] in _PG_TRANSIENT_CLASSES or code in _PG_TRANSIENT_CODES:
            return True
        return self.conn is None or bool(self.conn.closed)

    def _translate(self, exc: BaseException) -> BaseException:
        if self.transient(exc):
            self._drop_if_closed()
            return Transient("postgres: %s" % (str(exc).strip() or type(exc).__name__))
        return exc

    def _drop_if_closed(self) -> None:
        if self.conn is not None and self.conn.closed:
            self.close()

    def open(self) -> None:
        """Connect, with the C library's defaults where the connection string
        says nothing: connect_timeout, TCP keepalives (idle 10 s, interval
        5 s, 3 probes), fallback_application_name herald-projection."""
        import psycopg2
        import psycopg2.extensions
        try:
            given = psycopg2.extensions.parse_dsn(self.dsn)
        except psycopg2.Error as exc:
            from .errors import InvalidArgumentError
            raise InvalidArgumentError("dsn: not a libpq connection string: %s"
                                       % str(exc).strip()) from exc
        defaults = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                    "keepalives_count": 3, "fallback_application_name": "herald-projection"}
        if self.connect_timeout is not None:
            defaults["connect_timeout"] = max(1, int(self.connect_timeout))
        kwargs = {key: value for key, value in defaults.items() if key not in given}
        try:
            conn = psycopg2.connect(self.dsn, **kwargs)
        except psycopg2.Error as exc:
            raise self._translate(exc) from exc
        conn.autocommit = False
        self.conn = conn
        self.cursor = conn.cursor()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
        self.conn = self.cursor = None

    def begin(self) -> Any:
        if self.conn is None or self.conn.closed:
            self.close()
            self.open()
        return self.cursor

    def transaction_state(self, db: Any) -> Optional[str]:
        """None while the transaction is open; else why it is not.  A
        transaction in which a statement failed is aborted by PostgreSQL
        (a COMMIT would be answered ROLLBACK, which psycopg2 does not
        raise): it is not open."""
        import psycopg2.extensions as ext
        conn = self.conn
        if conn is None or conn.closed:
            return "the connection was closed"
        status = conn.get_transaction_status()
        if status in (ext.TRANSACTION_STATUS_INTRANS, ext.TRANSACTION_STATUS_ACTIVE):
            return None
        if status == ext.TRANSACTION_STATUS_INERROR:
            return ("a statement of this transaction failed (its error was caught and the "
                    "function went on): PostgreSQL aborted the transaction, nothing of the "
                    "batch is committed")
        return ("the transaction was ended by the projection's own function: never BEGIN, "
                "COMMIT or ROLLBACK in setup, reset or apply (the projection does)")

    def commit(self, db: Any) -> None:
        import psycopg2
        try:
            self.conn.commit()
        except psycopg2.Error as exc:
            raise self._translate(exc) from exc

    def rollback(self, db: Any) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            self.close()
            return
        try:
            conn.rollback()
        except Exception:
            self.close()                        # reconnect on the next begin

    def run(self, db: Any, sql: str, args: tuple = ()) -> Any:
        import psycopg2
        try:
            db.execute(sql, args)
            return db
        except psycopg2.Error as exc:
            raise self._translate(exc) from exc

    def table_ensure(self, db: Any, table: str) -> None:
        #  Two first opens at once would race in CREATE TABLE IF NOT EXISTS
        #  (23505 on pg_type's unique index): the C library's lock on the
        #  table first; a creator that took none makes it transient
        import psycopg2
        self._lock(db, table, "")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS %s (name TEXT PRIMARY KEY NOT NULL, "
                       "seq BIGINT NOT NULL, lineage BIGINT NOT NULL, "
                       "until_ts BIGINT NOT NULL, updated_ns BIGINT NOT NULL)" % table)
        except psycopg2.Error as exc:
            if getattr(exc, "pgcode", None) in ("23505", "42P07"):
                raise Transient("postgres: %s" % str(exc).strip()) from exc
            raise self._translate(exc) from exc

    def _lock(self, db: Any, table: str, name: str) -> None:
        """The C library's transaction-scoped advisory lock on (table, name):
        the first 64 bits of md5(table ':' name), table as given (unquoted).
        It excludes another writer also while the row is missing."""
        self.run(db, "SELECT pg_advisory_xact_lock(('x' || left(md5(%s || ':' || %s), 16))"
                     "::bit(64)::bigint)", (table.strip('"'), name))

    def position_read(self, db: Any, table: str, name: str) -> Optional[Row]:
        #  The lock in a statement of its own: the SELECT after it takes its
        #  snapshot once any other writer of the row committed
        self._lock(db, table, name)
        self.run(db, "SELECT seq, lineage, until_ts FROM %s WHERE name = %%s FOR UPDATE"
                 % table, (name,))
        row = db.fetchone()
        return None if row is None else checked_row(row, table.strip('"'), name)

    def position_write(self, db: Any, table: str, name: str, row: Row) -> None:
        self.run(db, "INSERT INTO %s (name, seq, lineage, until_ts, updated_ns) "
                     "VALUES (%%s, %%s, %%s, %%s, %%s) ON CONFLICT (name) DO UPDATE SET "
                     "seq = EXCLUDED.seq, lineage = EXCLUDED.lineage, "
                     "until_ts = EXCLUDED.until_ts, updated_ns = EXCLUDED.updated_ns"
                 % table, (name, row[0], row[1], row[2], time.time_ns()))

    def position_create(self, db: Any, table: str, name: str, row: Row) -> None:
        """Insert the row unless it exists.  A missing row cannot be locked:
        this insert is the lock (a second inserter waits for this
        transaction, then inserts nothing and reads the committed row)."""
        self.run(db, "INSERT INTO %s (name, seq, lineage, until_ts, updated_ns) "
                     "VALUES (%%s, %%s, %%s, %%s, %%s) ON CONFLICT (name) DO NOTHING"
                 % table, (name, row[0], row[1], row[2], time.time_ns()))

"""herald.projection - read models with exactly-once effects.

A projection builds a read model (tables in SQLite or PostgreSQL) from the
events of some topic prefixes and keeps its position (the last seq it
applied) in a table of the same database, written in the same transaction
as the effects of the events up to that seq: one transaction per batch.
A ``kill -9`` at any moment leaves the database as it was after some whole
batch, position included, and the projection resumes from there: no effect
is lost or applied twice, and ``apply`` never has to ask whether it saw an
event before.  The contract is docs/projections.md's, the same as the C
library's (include/herald_projection.h); both use one position table, so a
read model built by one is continued by the other.

    from herald.projection import SQLiteProjection

    def setup(db):
        db.execute("CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, qty INTEGER)")

    def apply(db, event):
        change = event.json()
        db.execute("INSERT INTO stock VALUES (?, ?) ON CONFLICT (sku) DO UPDATE "
                   "SET qty = qty + excluded.qty", (change["sku"], change["qty"]))

    with herald.Agent("inventory-view", state_dir=None, api=API) as agent, \\
         SQLiteProjection(agent, "stock", "stock.db", prefixes="stock.",
                          setup=setup, apply=apply) as projection:
        projection.start()
        projection.wait(published.seq)

Live projections subscribe with a position the caller keeps
(``caller_position=True``: nothing of theirs is in the agent's state_dir,
which may be None) and apply each batch of the agent on its delivery
thread (an ``AsyncAgent``'s: on the event loop).  Temporal ones
(``until_ts``) replay the log up to that instant on the thread that calls
``start`` and stop there.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence, Union

from . import _lib
from ._core import _prefix_list
from ._projection_db import PostgresBackend, SQLiteBackend, Transient, check_table
from ._schema import schema_spec
from .errors import (DataLostError, HeraldError, InvalidArgumentError, OverloadedError, Retry,
                     TimeoutError, TrimmedError, make_error)
from .event import Event, to_ns


_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
#: The states of :attr:`ProjectionStatus.state`
IDLE, CATCHING_UP, LIVE, DONE, FAILED = "idle", "catching_up", "live", "done", "failed"
LIVE_BATCH_MAX = 256
TEMPORAL_BATCH_MAX = 10000
RETRY_MAX_S = 1.0                       # a temporal transaction's backoff cap


@dataclass(frozen=True)
class ProjectionStatus:
    """A projection's state (``"idle"``, ``"catching_up"``, ``"live"``,
    ``"done"``, ``"failed"``), ``position`` (the last seq committed with its
    effects), ``lineage`` (the broker lineage stored with it), ``until_ts``
    (0: live) and counters since it was made: events ``applied`` and
    committed, ``skipped`` (at or below the position: never applied
    twice), ``transactions`` committed, ``rollbacks`` (RETRY, busy,
    errors), ``rebuilds``; ``error`` (a herald_err code) and ``message``
    once failed."""

    state: str
    position: int
    lineage: int
    until_ts: int
    applied: int
    skipped: int
    transactions: int
    rollbacks: int
    rebuilds: int
    error: int
    message: str


class ApplyError(HeraldError):
    """The apply function raised: the projection stopped at ``seq`` (the
    events before it are committed).  ``cause`` is what it raised."""

    code, name = _lib.ERR_INTERNAL, "apply_failed"

    def __init__(self, message: str, *, seq: int = 0, cause: Optional[BaseException] = None):
        super().__init__(message)
        self.seq = seq
        self.cause = cause


class _Stop(Exception):
    """Raised into the agent to stop the subscription (handled = leading
    events committed)."""

    def __init__(self, error: BaseException, handled: int):
        super().__init__(str(error))
        self.error = error
        self.handled = handled
        self.code = getattr(error, "code", _lib.ERR_INTERNAL)


def _callable_or_none(label: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError("%s: a function, or None" % label)
    if value is not None and inspect.iscoroutinefunction(value):
        raise TypeError("%s: a plain function (it runs inside the batch's transaction, "
                        "which an await cannot hold open), not async def" % label)
    return value


class Projection:
    """The common part of :class:`SQLiteProjection` and
    :class:`PostgresProjection` (see them and docs/projections.md)."""

    def __init__(self, agent: Any, name: str, backend: Any, *,
                 prefixes: Union[None, str, Sequence[str]] = None,
                 apply: Optional[Callable[[Any, Event], Any]] = None,
                 apply_batch: Optional[Callable[[Any, List[Event]], Any]] = None,
                 setup: Optional[Callable[[Any], Any]] = None,
                 reset: Optional[Callable[[Any], Any]] = None,
                 schemas: Optional[Mapping[str, int]] = None,
                 default_schema: Optional[int] = None, on_incompatible: str = "stop",
                 on_parked: Optional[Callable[[Event, str], Any]] = None,
                 until_ts: Any = None, batch_max: Optional[int] = None,
                 table: str = "herald_projection"):
        core = getattr(agent, "_core", None)
        if core is None:
            raise TypeError("agent: a herald.Agent or herald.AsyncAgent")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidArgumentError("name: 1-128 characters of [A-Za-z0-9._-], not %r"
                                       % (name,))
        self._agent = agent
        self._core = core
        self._async = hasattr(agent, "_loop")
        self.name = name
        self.table = table
        self._table = check_table(table)       # quoted, for the statements
        # A subclass may define these as methods (or prefixes as an attribute)
        if prefixes is None:
            prefixes = getattr(type(self), "prefixes", None)
        self.prefixes: List[str] = _prefix_list(prefixes)
        if not self.prefixes:
            raise InvalidArgumentError("prefixes: the topic prefixes projected (required)")
        self._apply = _callable_or_none("apply", apply or self._method("apply"))
        self._apply_batch = _callable_or_none("apply_batch",
                                              apply_batch or self._method("apply_batch"))
        if (self._apply is None) == (self._apply_batch is None):
            raise InvalidArgumentError("give apply=fn(db, event) or apply_batch=fn(db, "
                                       "events) (or define one of them as a method)")
        self._setup = _callable_or_none("setup", setup or self._method("setup"))
        self._reset = _callable_or_none("reset", reset or self._method("reset"))
        self._spec = schema_spec(schemas, default_schema, on_incompatible, on_parked)
        self.until_ts = to_ns(until_ts) if until_ts is not None else 0
        if self.until_ts < 0:
            raise InvalidArgumentError("until_ts: Unix ns >= 0 or a datetime")
        limit = TEMPORAL_BATCH_MAX * 10 if self.until_ts else LIVE_BATCH_MAX
        if batch_max is None or batch_max == 0:
            batch_max = TEMPORAL_BATCH_MAX if self.until_ts else LIVE_BATCH_MAX
        if isinstance(batch_max, bool) or not isinstance(batch_max, int) \
                or not 1 <= batch_max <= limit:
            raise InvalidArgumentError("batch_max: 1-%d events a transaction, not %r"
                                       % (limit, batch_max))
        self.batch_max = batch_max
        self._db = backend
        self._lock = threading.RLock()          # the connection, the counters
        self._changed = threading.Condition(threading.Lock())
        self._state = IDLE
        self._position = 0
        self._lineage = 0
        self._error: Optional[BaseException] = None
        self._counts = dict(applied=0, skipped=0, transactions=0, rollbacks=0, rebuilds=0)
        self._subscribed = False
        self._stopping = False
        self._closed = False
        self._open()

    def _method(self, name: str) -> Any:
        """A method of a subclass, or None (the base class defines none)."""
        if getattr(type(self), name, None) is None:
            return None
        return getattr(self, name)

    # -- transactions --------------------------------------------------------
    def _transaction(self, work: Callable[[Any], Any]) -> Any:
        """work(db) in one transaction, committed; the transaction rolled
        back on any exception, which propagates (Transient for a database
        error worth retrying)."""
        db = self._db.begin()
        try:
            result = work(db)
            why = self._db.transaction_state(db)
            if why:
                raise InvalidArgumentError(why)
            self._db.commit(db)
            return result
        except BaseException:
            self._db.rollback(db)
            raise

    def _read_row(self, db: Any) -> tuple:
        """The row (locked for this transaction), created at 0 when missing."""
        row = self._db.position_read(db, self._table, self.name)
        if row is None:
            self._db.position_create(db, self._table, self.name,
                                     (0, self._lineage, self.until_ts))
            row = self._db.position_read(db, self._table, self.name)
        return row

    def _user(self, function: Callable[..., Any], *args: Any) -> Any:
        """A user function's exception as Transient when the database says
        it is worth retrying (busy, serialization, a lost connection)."""
        try:
            return function(*args)
        except Transient:
            raise
        except Exception as exc:
            if self._db.transient(exc):
                raise Transient(str(exc)) from exc
            raise

    def _open(self) -> None:
        """Connect, create the position table and the row, run setup."""
        def work(db: Any) -> tuple:
            self._db.table_ensure(db, self._table)
            row = self._read_row(db)
            if row[2] != self.until_ts:
                raise InvalidArgumentError(
                    "projection %s was built %s; this one is %s: rebuild it, or use another "
                    "name or database" % (self.name, _as_of(row[2]), _as_of(self.until_ts)))
            if self._setup is not None:
                self._user(self._setup, db)
            return row
        try:
            try:
                self._db.open()
            except Exception as exc:
                raise make_error(_lib.ERR_IO, "projection %s: cannot open the %s database: %s"
                                 % (self.name, self._db.name, exc)) from exc
            try:
                row = self._retrying(work, "opening")
            except HeraldError:
                raise
            except Exception as exc:
                raise make_error(_lib.ERR_IO, "projection %s: opening: %s: %s"
                                 % (self.name, type(exc).__name__, exc)) from exc
        except BaseException:
            self._db.close()
            raise
        self._position, self._lineage = row[0], row[1]

    def _retrying(self, work: Callable[[Any], Any], what: str,
                  timeout: float = 10.0) -> Any:
        """_transaction(work), transient errors retried for up to timeout."""
        deadline = time.monotonic() + timeout
        pause = 0.01
        while True:
            try:
                return self._transaction(work)
            except Transient as exc:
                self._counts["rollbacks"] += 1
                if time.monotonic() + pause > deadline:
                    raise make_error(_lib.ERR_IO, "projection %s: %s: %s"
                                     % (self.name, what, exc)) from exc
                time.sleep(pause)
                pause = min(pause * 2, RETRY_MAX_S)

    # -- one batch -------------------------------------------------------------
    def _commit_batch(self, events: List[Event], lineage: int) -> None:
        """One transaction: skip what the row has, apply the rest, write
        the row.  Raises Transient or Retry (rolled back), or _Failed with
        the index of the event whose apply raised (rolled back)."""
        def work(db: Any) -> tuple:
            stored = self._read_row(db)[0]
            todo = [event for event in events if event.seq > stored]
            skipped = len(events) - len(todo)
            if todo:
                if self._apply_batch is not None:
                    try:
                        self._user(self._apply_batch, db, todo)
                    except (Transient, Retry):
                        raise
                    except BaseException as exc:
                        raise _Failed(exc, getattr(exc, "handled", 0) or 0, todo) from exc
                else:
                    apply, state = self._apply, self._db.transaction_state
                    for index, event in enumerate(todo):
                        try:
                            self._user(apply, db, event)
                        except (Transient, Retry):
                            raise
                        except BaseException as exc:
                            raise _Failed(exc, index, todo) from exc
                        why = state(db)
                        if why:
                            raise InvalidArgumentError("apply of seq %d: %s" % (event.seq,
                                                                                why))
                self._db.position_write(db, self._table, self.name,
                                        (todo[-1].seq, lineage, self.until_ts))
            return stored, len(todo), skipped
        stored, applied, skipped = self._transaction(work)
        with self._changed:
            self._counts["skipped"] += skipped
            if applied:
                self._counts["applied"] += applied
                self._counts["transactions"] += 1
                self._position = events[-1].seq
                self._lineage = lineage
            elif stored > self._position:
                self._position = stored
            self._changed.notify_all()

    def _project(self, events: List[Event], lineage: int) -> int:
        """Commit events in transactions of batch_max.  Returns how many
        are committed; raises Transient/Retry (after committing some: its
        `handled`) or _Stop (FAILED, with the leading events committed)."""
        done = 0
        step = self.batch_max
        while done < len(events):
            chunk = events[done:done + step]
            try:
                self._commit_batch(chunk, lineage)
            except (Transient, Retry) as exc:
                self._counts["rollbacks"] += 1
                exc.handled = done                   # type: ignore[attr-defined]
                raise
            except _Failed as failed:
                self._counts["rollbacks"] += 1
                error = self._fail_at(failed, lineage)
                #  What the agent counts as handled: the events of the chunk
                #  before the failing one when those were committed
                seq = failed.todo[failed.index].seq if failed.leading else 0
                raise _Stop(error, done + sum(1 for event in chunk if event.seq < seq))
            except BaseException as exc:        # the database's own error
                self._counts["rollbacks"] += 1
                if isinstance(exc, HeraldError):
                    error = type(exc)("projection %s: %s" % (self.name, exc))
                else:
                    error = make_error(_lib.ERR_IO, "projection %s: %s: %s"
                                       % (self.name, type(exc).__name__, exc))
                error.__cause__ = exc
                self._set_failed(error)
                raise _Stop(error, done)
            done += len(chunk)
        return done

    def _fail_at(self, failed: "_Failed", lineage: int) -> BaseException:
        """The apply of failed.todo[failed.index] raised: commit the events
        before it (a transaction of their own), then FAILED."""
        leading = failed.todo[:failed.index]
        event = failed.todo[failed.index] if failed.index < len(failed.todo) \
            else failed.todo[-1]
        committed_note = ""
        if leading:
            try:
                self._commit_batch(leading, lineage)
            except BaseException as again:      # the leading ones failed too now
                committed_note = " (the events before it were not committed either: %s)" \
                    % again
                failed.index = 0
        failed.leading = len(leading) if not committed_note else 0
        error = ApplyError("projection %s: apply failed at seq %d (%s, topic %s): %s: %s%s"
                           % (self.name, event.seq, event.type or "no type", event.topic,
                              type(failed.cause).__name__, failed.cause, committed_note),
                           seq=event.seq, cause=failed.cause)
        error.__cause__ = failed.cause
        self._set_failed(error)
        return error

    def _set_failed(self, error: BaseException) -> None:
        with self._changed:
            self._state = FAILED
            self._error = error
            self._changed.notify_all()

    # -- live: the agent's batch handler ------------------------------------
    def _on_batch(self, events: List[Event]) -> None:
        """The subscription's batch handler: Retry(handled=n) to roll back
        and have the rest offered again after the backoff; _Stop to stop
        the subscription (FAILED) with the leading events committed."""
        if self._stopping:
            raise Retry()                       # unsubscribe follows: nothing applied
        with self._lock:
            if self._state == FAILED:
                raise _Stop(self._error or make_error(_lib.ERR_INTERNAL), 0)
            try:
                self._project(events, self._sub_lineage())
            except Transient as exc:
                raise Retry(str(exc), handled=getattr(exc, "handled", 0)) from exc

    def _sub_lineage(self) -> int:
        """The broker lineage the subscription's position is on (the one
        checked at start until the agent has heard one)."""
        try:
            lineage = self._core.sub_status(self.name).lineage
        except HeraldError:
            return self._lineage
        return self._lineage if lineage == 2 ** 64 - 1 else lineage

    def _on_lost(self, exc: BaseException) -> None:
        """The agent stopped the subscription: the broker lost events, or
        trimmed the ones it needs (its read model is fine, just behind)."""
        if isinstance(exc, TrimmedError):
            self._set_failed(TrimmedError(
                "projection %s: %s" % (self.name, exc), first=exc.first))
            return
        self._set_failed(DataLostError(
            "projection %s: %s; its read model holds effects of events the broker no longer "
            "has: rebuild it" % (self.name, exc)))

    # -- the broker's side ---------------------------------------------------
    def _broker_lineage(self, timeout: Optional[float]) -> int:
        """The broker's lineage, once the agent was welcomed (it asks on
        connect)."""
        limit = time.monotonic() + (timeout if timeout is not None else self._core_timeout())
        pause = 0.002
        while True:
            stats = self._core.stats()
            if stats.node:
                return stats.broker_lineage
            if time.monotonic() > limit:
                raise TimeoutError("projection %s: the broker did not answer the agent in "
                                   "time (is it running?)" % self.name)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _core_timeout(self) -> float:
        return 5.0

    def _replay(self, timeout: Optional[float], **span: Any) -> Any:
        """agent.replay, an overloaded broker (too many streams running: a
        busy broker, or clients killed while it still served them) asked
        again with a backoff for up to timeout (default 5 s)."""
        limit = time.monotonic() + (timeout if timeout is not None else self._core_timeout())
        pause = 0.01
        while True:
            try:
                return self._core.replay(timeout=timeout, **span)
            except OverloadedError:
                if time.monotonic() + pause > limit:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    def _check_broker(self, timeout: Optional[float]) -> int:
        """The stored position must be on the broker's log: the same lineage,
        and the event at that seq still there.  Returns the lineage."""
        lineage = self._broker_lineage(timeout)
        with self._lock:
            row = self._retrying(self._read_row, "reading the position")
            seq, stored_lineage = row[0], row[1]
        if seq == 0:
            if stored_lineage != lineage:
                def adopt(db: Any) -> None:
                    if self._read_row(db)[0] == 0:
                        self._db.position_write(db, self._table, self.name,
                                                (0, lineage, self.until_ts))
                with self._lock:
                    self._retrying(adopt, "writing the lineage")
            return lineage
        if stored_lineage != lineage:
            raise DataLostError(
                "projection %s: its position (seq %d) was written in broker lineage %d; the "
                "broker is in lineage %d (it lost events since): rebuild the read model"
                % (self.name, seq, stored_lineage, lineage))
        try:
            found = self._replay(timeout, from_seq=seq, to_seq=seq, prefixes=self.prefixes)
        except TrimmedError:
            # trimmed (herald trim): the broker stored it.  Whether the events
            # after it are still there is the subscription's to say (TrimmedError)
            return lineage
        if not any(event.seq == seq for event in found):
            raise DataLostError(
                "projection %s: its position (seq %d) is beyond the broker's log (not the "
                "database of this broker, or the broker lost events): rebuild the read "
                "model" % (self.name, seq))
        return lineage

    # -- the API --------------------------------------------------------------
    def start(self, timeout: Optional[float] = None) -> "ProjectionStatus":
        """Check the stored position against the broker (same lineage, the
        event at its seq still there: else :class:`herald.DataLostError`,
        the projection FAILED until rebuilt), then: live, subscribe from the
        position + 1 and return at once (events are applied on the agent's
        delivery thread, or an AsyncAgent's event loop); temporal, apply
        every event up to ``until_ts`` here and return when done (DONE), or
        raise what stopped it.  ``timeout`` (seconds) bounds each wait for
        the broker.  Returns :meth:`status`."""
        self._check_open()
        if self._subscribed and self._state == FAILED:
            self.stop()                         # start again after a failure
        if self._subscribed:
            raise InvalidArgumentError("projection %s is running" % self.name)
        with self._changed:
            self._state, self._error = CATCHING_UP, None
        try:
            lineage = self._check_broker(timeout)
        except BaseException as exc:
            self._set_failed(exc)
            raise
        self._lineage = lineage
        if self.until_ts:
            self._run_temporal(lineage, timeout)
            return self.status()
        self._stopping = False
        self._core.error_sinks[self.name] = self._on_lost
        try:
            self._agent.subscribe(self.prefixes, self._on_batch, name=self.name,
                                  start=self._position + 1, batch=True, caller_position=True,
                                  **self._schema_kwargs())
        except BaseException as exc:
            self._core.error_sinks.pop(self.name, None)
            self._set_failed(exc)
            raise
        self._subscribed = True
        return self.status()

    def _schema_kwargs(self) -> dict:
        spec = self._spec
        if spec is None:
            return {}
        return dict(schemas=spec.schemas, default_schema=spec.default,
                    on_incompatible=spec.policy, on_parked=spec.on_parked)

    def stop(self) -> None:
        """Unsubscribe; returns once the batch in hand is committed or
        rolled back.  The position stays: start again resumes."""
        if not self._subscribed:
            return
        self._stopping = True
        try:
            self._core.unsubscribe(self.name)
        except HeraldError:
            pass
        with self._lock:                        # a batch in hand is done
            self._subscribed = False
            self._core.error_sinks.pop(self.name, None)
        with self._changed:
            if self._state != FAILED:
                self._state = IDLE
            self._changed.notify_all()

    def rebuild(self, timeout: Optional[float] = None) -> "ProjectionStatus":
        """Stop; in one transaction, run reset (drop the read model) and set
        the position to 0; then setup; start again when it was running
        (live).  Refused without a reset function.  Returns :meth:`status`."""
        self._check_open()
        if self._reset is None:
            raise InvalidArgumentError("projection %s has no reset function: nothing to "
                                       "drop, so it cannot be rebuilt" % self.name)
        running = self._subscribed
        self.stop()

        def drop(db: Any) -> None:
            self._read_row(db)
            self._user(self._reset, db)
            self._db.position_write(db, self._table, self.name,
                                    (0, self._lineage, self.until_ts))

        def setup(db: Any) -> None:
            if self._setup is not None:
                self._user(self._setup, db)
        with self._lock:
            self._retrying(drop, "resetting")
            self._retrying(setup, "setting up")
        with self._changed:
            self._position = 0
            self._state, self._error = IDLE, None
            self._counts["rebuilds"] += 1
            self._changed.notify_all()
        if running:
            self.start(timeout)
        return self.status()

    def wait(self, seq: int, timeout: Optional[float] = None) -> "ProjectionStatus":
        """Wait until every event of this projection up to ``seq`` is
        applied and committed: the position is at least ``seq``, or the
        subscription has passed ``seq`` (an event of another topic: the
        position only moves with the events applied).  Raise what stopped
        the projection if it fails, or :class:`herald.TimeoutError` after
        ``timeout`` seconds (None: for ever).  Returns :meth:`status`."""
        self._not_on_loop("wait", "wait_async")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._changed:
                if self._position >= seq:
                    break
                if self._state == FAILED:
                    raise self._error or make_error(_lib.ERR_INTERNAL)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("projection %s: position %d, not yet %d"
                                       % (self.name, self._position, seq))
                self._changed.wait(0.05 if left is None else min(left, 0.05))
            if self._passed(seq):
                break
        return self.status()

    def _passed(self, seq: int) -> bool:
        """Whether the live subscription is past seq: every event up to it
        was handled, so committed (a batch returns after its commit).  A
        subscription the agent stopped (a replay refused...) fails the
        projection."""
        if not self._subscribed or self._state == FAILED:
            return False
        try:
            sub = self._core.sub_status(self.name)
        except HeraldError:
            return False
        if sub.state == "failed":
            with self._changed:
                #  The handler that stopped the subscription set FAILED with
                #  the real reason (the database's error) just before: keep
                #  it (read above without the lock, _state may have been
                #  set since)
                if self._state != FAILED:
                    self._state = FAILED
                    self._error = make_error(sub.error or _lib.ERR_INTERNAL,
                                             "projection %s: its subscription failed: %s"
                                             % (self.name, sub.message))
                    self._changed.notify_all()
            return False
        return sub.delivered_seq >= seq and self._state != FAILED

    def catch_up(self, timeout: Optional[float] = None) -> "ProjectionStatus":
        """Wait until everything the broker holds now is applied: its head
        is asked (after the agent heard a heartbeat), then :meth:`wait`.
        For a script that shows the read model once and exits.  Returns
        :meth:`status`."""
        self._not_on_loop("catch_up", "catch_up_async")
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.until_ts:
            return self.status()               # start() returned when done
        pause = 0.005
        while not self._core.stats().broker_reachable:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("projection %s: no heartbeat from the broker" % self.name)
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        #  The head at the last heartbeat, then what came since (few events)
        since = max(1, self._core.stats().broker_head)
        left = None if deadline is None else max(0.001, deadline - time.monotonic())
        head = self._replay(left, from_seq=since, prefixes=self.prefixes,
                            handler=lambda event: None).last
        left = None if deadline is None else max(0.001, deadline - time.monotonic())
        return self.wait(head, left)

    def _not_on_loop(self, what: str, instead: str) -> None:
        """An AsyncAgent's projection applies its batches on the event loop:
        blocking that loop's thread to wait for them would wait for ever."""
        if not self._async:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self._agent._loop:
            raise InvalidArgumentError("%s() would block the event loop that applies this "
                                       "projection's events: await %s()" % (what, instead))

    def _poll_subscription(self) -> None:
        self._passed(2 ** 64)

    def status(self) -> "ProjectionStatus":
        """State, position and counters (a :class:`ProjectionStatus`)."""
        self._poll_subscription()
        with self._changed:
            state = self._state
            if state == CATCHING_UP and self._subscribed:
                try:
                    if self._core.sub_status(self.name).state == "live":
                        state = LIVE
                except HeraldError:
                    pass
            error = self._error
            return ProjectionStatus(
                state=state, position=self._position, lineage=self._lineage,
                until_ts=self.until_ts, error=getattr(error, "code", 0) if error else 0,
                message=str(error) if error else "", **self._counts)

    def close(self) -> None:
        """Stop and close the database.  Idempotent."""
        if self._closed:
            return
        self.stop()
        with self._lock:
            self._closed = True
            self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError("projection %s is closed" % self.name)

    def __enter__(self) -> "Projection":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self) -> "Projection":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<herald.%s %s %s>" % (type(self).__name__, self.name, self._state)

    # -- asyncio: the blocking calls in the loop's executor ----------------
    async def start_async(self, timeout: Optional[float] = None) -> "ProjectionStatus":
        """:meth:`start` in the running loop's default executor (a temporal
        projection's replay blocks)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.start, timeout)

    async def wait_async(self, seq: int, timeout: Optional[float] = None
                         ) -> "ProjectionStatus":
        """:meth:`wait` without blocking the loop (which applies the batches
        of an AsyncAgent's projection)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.wait, seq, timeout)

    async def catch_up_async(self, timeout: Optional[float] = None) -> "ProjectionStatus":
        """:meth:`catch_up` without blocking the loop."""
        return await asyncio.get_running_loop().run_in_executor(None, self.catch_up, timeout)

    async def rebuild_async(self, timeout: Optional[float] = None) -> "ProjectionStatus":
        """:meth:`rebuild` in the executor."""
        return await asyncio.get_running_loop().run_in_executor(None, self.rebuild, timeout)

    # -- temporal ------------------------------------------------------------
    def _run_temporal(self, lineage: int, timeout: Optional[float]) -> None:
        """Replay (position, until_ts] here: _projection_temporal.py."""
        from ._projection_temporal import run
        run(self, lineage, timeout)


class _Failed(Exception):
    """apply raised at todo[index] (apply_batch: index = its `handled`)."""

    def __init__(self, cause: BaseException, index: int, todo: List[Event]):
        super().__init__(str(cause))
        self.cause = cause
        self.index = max(0, min(int(index) if isinstance(index, int) else 0, len(todo) - 1
                                if todo else 0))
        self.todo = todo
        self.leading = 0


def _as_of(until_ts: int) -> str:
    return "live (until_ts 0)" if not until_ts else "as of until_ts %d" % until_ts


class SQLiteProjection(Projection):
    """A projection into the SQLite file ``path`` (created when missing),
    through the standard library's sqlite3.

    ``apply(db, event)`` (or ``apply_batch(db, events)``) gets the
    ``sqlite3.Connection`` inside the batch's transaction: run statements,
    never BEGIN, COMMIT or ROLLBACK (a transaction ended by it fails the
    projection).  Return normally: applied.  ``raise herald.Retry``: the
    batch is rolled back and offered again after the agent's backoff.
    Anything else: the batch is rolled back, the events before this one are
    applied and committed, and the projection stops (FAILED, the seq in
    ``status().message``; :meth:`wait` raises :class:`ApplyError`).  An
    ``apply_batch`` that raises sets ``exc.handled`` to how many leading
    events are good (default 0).  ``setup(db)`` creates the read model
    (``CREATE TABLE IF NOT EXISTS``), in a transaction, each time the
    projection opens; ``reset(db)`` drops it, for :meth:`rebuild`.  A
    subclass may define ``prefixes`` and these four as methods instead.

    ``schemas``, ``default_schema``, ``on_incompatible``, ``on_parked``:
    as for ``Agent.subscribe`` (docs/schemas.md); ``until_ts`` (Unix ns or
    a datetime, inclusive): a temporal projection, the read model as of
    that instant; ``batch_max``: events per transaction (live 1-256,
    default 256; temporal up to 100000, default 10000); ``table``: the
    position table.  The file is in WAL mode; ``busy_timeout`` (seconds)
    is how long a statement waits for another writer before the batch is
    retried.  Opening connects, creates the position table and the row
    when missing, and runs setup; :meth:`start` starts it.
    """

    def __init__(self, agent: Any, name: str, path: Any, *, busy_timeout: float = 0.2,
                 **options: Any):
        super().__init__(agent, name, SQLiteBackend(path, busy_timeout), **options)
        self.path = self._db.path


class PostgresProjection(Projection):
    """A projection into PostgreSQL (``dsn``: a libpq connection string),
    through psycopg2 (Debian's python3-psycopg2).

    As :class:`SQLiteProjection`, except that ``db`` is a psycopg2 cursor
    (``db.execute(sql, args)`` with ``%s`` placeholders) inside the batch's
    transaction, and the projection's row is read ``FOR UPDATE`` (two
    processes running one projection never both apply an event).
    Serialization failures, deadlocks and a lost connection roll the batch
    back and retry it, reconnecting; ``connect_timeout`` (seconds) bounds a
    connection attempt.
    """

    def __init__(self, agent: Any, name: str, dsn: str, *,
                 connect_timeout: Optional[float] = 10.0, **options: Any):
        super().__init__(agent, name, PostgresBackend(dsn, connect_timeout), **options)
        self.dsn = dsn


__all__ = ["Projection", "SQLiteProjection", "PostgresProjection", "ProjectionStatus",
           "ApplyError", "IDLE", "CATCHING_UP", "LIVE", "DONE", "FAILED"]

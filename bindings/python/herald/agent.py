"""herald.agent - the synchronous agent.

Handlers run on the C agent's delivery thread, one at a time (never two
handlers of one agent at once); every blocking call releases the GIL.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
import uuid
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TypeVar, Union

from . import _lib, _schema
from ._core import Data, Prefixes, Subscription, _Core, _prefix_list, group_spec, name_for
from .errors import Retry
from .event import (BEGINNING, Event, EventList, GroupStatus, Published, Snapshot,
                    StartLike, Stats, SubscriptionStatus)

Handler = TypeVar("Handler", bound=Callable[[Event], Any])


class PublishFuture(concurrent.futures.Future):     # type: ignore[type-arg]
    """The future :meth:`Agent.publish_async` returns: a
    ``concurrent.futures.Future`` of :class:`Published`, with ``id``, the
    event's id (a ``uuid.UUID``: the one given or the one the agent made),
    set before it is returned."""

    id: uuid.UUID


class Agent:
    """A service's connection to a Herald broker: the C agent (libherald).

    ``service_id`` names the service to the broker; ``state_dir`` holds its
    local state (checkpoints, the outbox, snapshots) and is locked: one
    agent per directory.  ``state_dir=None``: no local state, for a service
    without a disk; then only consumer-group subscriptions can be made
    (their positions are the broker's; a local one, and a snapshot, raise
    :class:`InvalidArgumentError`), and a publish not yet acknowledged
    lives in memory only: a crash or :meth:`close` loses it (use
    :meth:`publish`, which waits).  ``api`` is the broker's request
    endpoint, or a cluster's: a list of its nodes' endpoints (or one
    comma-separated str); the agent talks to one node at a time, follows the leader and
    moves on when a node fails (docs/agent.md, "A cluster").  ``fanout`` is
    learned from each node when not given.  Times are in
    seconds: ``timeout`` (5 s) bounds synchronous calls; the others
    (``heartbeat``, ``dedup_window``, ``live_buffer``,
    ``outbox_max_events``, ``outbox_max_bytes``, ``outbox_fsync``,
    ``sync_interval``, ``retry_max``, ``sub_rcvhwm``) are the C agent's
    options (docs/agent.md).  ``on_error(subscription, exception)`` is
    called when a subscription stops on an error (by default it is
    logged on the ``herald`` logger).

    Security (docs/security.md, "Clients"): ``key_file`` (this service's
    zcert secret file, mode 0600) and ``server_key`` (the broker's public
    key: Z85, ``@FILE``, or ``"NEW,OLD"`` during a broker-key rotation)
    default to ``$HERALD_KEY`` and ``$HERALD_SERVER_KEY``.  With both,
    every connection uses CURVE; a publish outside the key's grants
    raises :class:`herald.Unauthorized`; a key the broker refuses is
    retried by the agent (``stats()["auth_refused"]`` counts refusals).

    Use it as a context manager, or call :meth:`close`::

        with herald.Agent("inventory", state_dir="var/inventory") as agent:
            @agent.subscribe("orders.")
            def on_order(event):
                ...
            agent.publish("stock.A7", {"qty": 2}, type="StockReserved")

    Handlers run on the agent's delivery thread, one at a time, exactly
    once per event and in ``seq`` order (docs/agent.md has the contract).
    A handler returning normally has handled its event (the checkpoint
    moves past it); raising :class:`herald.Retry` has it offered again
    after a backoff; raising anything else stops the subscription (the
    event is not checkpointed: subscribing again retries it) and reports
    the exception to ``on_error``.
    """

    def __init__(self, service_id: str, *,
                 state_dir: Union[str, "os.PathLike[str]", None],
                 api: Union[str, Sequence[str]] = "tcp://127.0.0.1:5580",
                 fanout: Union[str, Sequence[str], None] = None,
                 timeout: float = 5.0,
                 on_error: Optional[Callable[[str, BaseException], Any]] = None,
                 **options: Any):
        self._core = _Core(service_id, state_dir=state_dir, api=api, fanout=fanout,
                           timeout=timeout, on_error=on_error, **options)

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        """Stop the agent (a running handler finishes first) and free it.
        Publishes not yet acknowledged stay in the outbox, sent by the next
        agent on this state directory (:meth:`flush` first to wait for
        them).  Idempotent; not from a handler."""
        self._core.close()

    @property
    def closed(self) -> bool:
        return self._core.closed

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<herald.Agent %s%s>" % (self._core.service_id,
                                        " closed" if self.closed else "")

    # -- publishing ------------------------------------------------------
    def publish(self, topic: str, data: Data = b"", *, type: Optional[str] = None,
                schema: Optional[int] = None, meta: Optional[Mapping[str, str]] = None,
                expect: Optional[int] = None, id: Union[None, uuid.UUID, bytes] = None,
                timeout: Optional[float] = None) -> Published:
        """Publish one event and wait until the broker has stored it.

        ``data`` is bytes, a str (UTF-8) or a dict/list (JSON).  ``expect``
        is optimistic concurrency: the topic's version must be exactly this
        (0: the topic must not exist), else :class:`ConflictError` with
        ``.expected`` and ``.actual``.  ``id`` (a UUID) makes a retry safe:
        an id stored before gives ``Published(duplicate=True)`` with its
        original seq.  The event goes to the durable outbox first, so
        :class:`herald.TimeoutError` means QUEUED, not lost (``.id`` is its
        id): it is sent when the broker answers.
        """
        return self._core.publish(topic, data, type=type, schema=schema, meta=meta,
                                  expect=expect, id=id, timeout=timeout)

    def publish_async(self, topic: str, data: Data = b"", *, type: Optional[str] = None,
                      schema: Optional[int] = None, meta: Optional[Mapping[str, str]] = None,
                      expect: Optional[int] = None,
                      id: Union[None, uuid.UUID, bytes] = None
                      ) -> "PublishFuture":
        """Queue one event and return at once a :class:`PublishFuture` (a
        ``concurrent.futures.Future``) of its :class:`Published` (or of the
        exception :meth:`publish` would raise); its ``id`` is the event's
        id, known at once, to reconcile after a crash.  Many may be in
        flight: they are sent in call order, batched and pipelined.  The
        future is resolved exactly once, on the agent's delivery thread
        (its done-callbacks run there), and at the latest by
        :meth:`close`: an event not acknowledged by then fails with
        :class:`herald.TimeoutError` -- queued in the outbox, sent by the
        next agent on this state directory."""
        future = PublishFuture()
        future.set_running_or_notify_cancel()

        def resolve(value: Any) -> None:
            if future.done():
                return
            if isinstance(value, BaseException):
                future.set_exception(value)
            else:
                future.set_result(value)
        future.id = self._core.publish_async(topic, data, type, schema, meta, expect, id,
                                             resolve)
        return future

    def flush(self, timeout: Optional[float] = None) -> None:
        """Wait until everything published so far is acknowledged or refused
        and every :meth:`publish_async` future of it is resolved
        (:class:`herald.TimeoutError` otherwise: what is unanswered stays
        queued).  From a handler or publish callback of this agent it waits
        for the answers only."""
        self._core.flush(timeout)

    # -- subscribing -----------------------------------------------------
    def subscribe(self, prefixes: Prefixes = None,
                  handler: Optional[Callable[[Event], Any]] = None, *,
                  name: Optional[str] = None, start: StartLike = BEGINNING,
                  group: Optional[str] = None, partitions: Optional[int] = None,
                  session: Optional[float] = None, batch_max: Optional[int] = None,
                  schemas: Optional[Mapping[str, int]] = None,
                  default_schema: Optional[int] = None, on_incompatible: str = "stop",
                  on_parked: Optional[Callable[[Event, str], Any]] = None,
                  batch: bool = False, caller_position: bool = False) -> Any:
        """Subscribe ``handler`` to the events whose topic begins with one of
        ``prefixes`` (a str or several; None: every topic).

        ``name`` is durable (default: the handler's name): after a restart,
        subscribing under the same name resumes after the last event
        handled, and ``start`` (:data:`herald.BEGINNING`,
        :data:`herald.NOW`, a seq, a datetime) only applies to a new one.

        ``group="billing"`` joins consumer group ``billing`` instead
        (docs/groups.md): the position is kept by the broker, not in
        ``state_dir`` (which may be None), and the agents that subscribe
        with the same group share the work, each topic handled by one
        member at a time, in order.  The subscription's name is the
        group's.  The events of the batch a member was handling when it
        died come again, to the next owner, with ``event.redelivered``
        True.  ``partitions`` (1-1024), ``session`` (seconds, 0.3-60) and
        ``start`` apply when this join creates the group; ``batch_max``
        (1-256) is this member's: events declared, handled and committed
        at once.  Defaults: 32, 3 s, 100.

        ``schemas={"OrderPlaced": 2}`` declares the schema the handler
        understands per event type (docs/schemas.md): every event of such a
        type reaches it converted through the upcasters and downcasters
        registered on this agent (``event.stored_schema`` is the log's);
        ``default_schema`` is the schema of every other type (None: as
        stored).  ``on_incompatible`` is what an event that cannot be
        converted does: ``"stop"`` fails the subscription, ``"skip"`` tells
        on_error and moves past it, ``"park"`` records it (state_dir's
        parked file; ``on_parked(event, reason)`` too) and moves past it.

        With a handler, returns the :class:`Subscription`.  Without, it is a
        decorator: ``@agent.subscribe("orders.")`` (or ``@agent.subscribe(
        "orders.", group="billing")``) subscribes the function, returns it
        unchanged and sets its ``subscription`` attribute.

        ``batch=True`` calls ``handler`` with a list of events (up to 256,
        in seq order) instead of once per event: one Python call per
        batch (docs/python.md, "Batch handlers").  It returns None (all
        done) or the number of leading events it handled (the rest comes
        again at once); ``raise herald.Retry(handled=n)`` commits the
        first n and offers the rest again after the backoff; any other
        exception commits the first ``exc.handled`` (default 0) and stops
        the subscription.  After a crash in a batch, each of its events
        not committed comes again with ``redelivered`` True.  With
        ``schemas=`` each event of a batch is converted; one that cannot be
        skipped or parked is left out of the batches.

        ``caller_position=True``: you keep the position, not the agent
        (a read model keeps it in its own database, in the transaction of
        its effects: docs/projections.md).  Nothing of the subscription is
        written to ``state_dir`` (which may be None); ``start`` applies on
        every subscribe (give your position + 1); the dedup window is in
        memory; and when the broker reports that it lost events this
        subscription had passed, it stops (``on_error`` gets a
        :class:`herald.DataLostError`) instead of rewinding.  Not with
        ``group=``; ``on_incompatible="park"`` needs ``on_parked``.
        """
        if handler is None and callable(prefixes):
            handler, prefixes = prefixes, None
        spec = group_spec(group, name, partitions, session, batch_max)
        schema_spec = _schema.schema_spec(schemas, default_schema, on_incompatible, on_parked)
        if handler is None:
            def decorate(function: Handler) -> Handler:
                sub = self.subscribe(prefixes, function, name=name, start=start,
                                     group=group, partitions=partitions, session=session,
                                     batch_max=batch_max, schemas=schemas,
                                     default_schema=default_schema,
                                     on_incompatible=on_incompatible, on_parked=on_parked,
                                     batch=batch, caller_position=caller_position)
                try:
                    function.subscription = sub          # type: ignore[attr-defined]
                except AttributeError:
                    pass
                return function
            return decorate
        if group is not None:
            name = group
        elif name is None:
            name = name_for(getattr(handler, "__name__", "handler"))
        core = self._core
        return core.subscribe(name, _prefix_list(prefixes), start, handler,
                              core.sync_batch_trampoline if batch else core.sync_trampoline,
                              group=spec, batch=batch, schemas=schema_spec,
                              caller_position=caller_position)

    # -- schema evolution (docs/schemas.md; _schema.py) ---------------------
    def upcaster(self, type: str, from_schema: int, *, codec: Optional[str] = None
                 ) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        """Decorator: register the function as the upcaster of ``type`` from
        schema ``from_schema`` to ``from_schema + 1``.  It takes the data
        and returns the new data: bytes, or with ``codec="json"`` /
        ``"msgpack"`` the decoded payload.  It runs on the agent's delivery
        thread (pure, no I/O, no event loop); what it raises fails the
        conversion (the subscription's on_incompatible applies).  Never
        replaced: registering one step twice is InvalidArgumentError."""
        _schema.check_codec(codec)
        def decorate(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
            _schema.register(self._core, type, from_schema, function, codec, down=False)
            return function
        return decorate

    def downcaster(self, type: str, from_schema: int, *, codec: Optional[str] = None
                   ) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        """Decorator: the downcaster of ``type`` from ``from_schema`` to
        ``from_schema - 1`` (how an older handler reads newer events); as
        :meth:`upcaster` otherwise."""
        _schema.check_codec(codec)
        def decorate(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
            _schema.register(self._core, type, from_schema, function, codec, down=True)
            return function
        return decorate

    def parked(self, name: str) -> "list":
        """The parked events of subscription ``name`` (state_dir's parked
        file), oldest first, as stored: a list of ``Parked(event, reason)``."""
        return _schema.parked(self._core, name)

    def replay_parked(self, name: str, handler: Callable[[Event], Any]) -> int:
        """Hand ``name``'s parked events, converted with the casters
        registered now, to ``handler`` on this thread, oldest first; each
        one handled leaves the file.  The first that fails raises, and it
        and the ones after it stay parked.  At least once: a crash between
        a handler and the file's rewrite passes that event again.  The
        subscription must have been made on this agent (its declarations).
        Returns how many were handled."""
        return _schema.replay_parked(self._core, name, handler)

    def schema_stats(self, name: Optional[str] = None) -> "_schema.SchemaStats":
        """Conversions and incompatible events of subscription ``name`` (None:
        all): upcast, downcast, skipped, parked, stopped."""
        return _schema.schema_stats(self._core, name)

    def unsubscribe(self, name: str) -> None:
        """Stop subscription ``name`` (its checkpoint stays)."""
        self._core.unsubscribe(name)

    def subscription(self, name: str) -> SubscriptionStatus:
        """Subscription ``name``'s state, checkpoint and counters."""
        return self._core.sub_status(name)

    def group_status(self, group: str) -> GroupStatus:
        """This agent's member figures in consumer group ``group``
        (partitions owned, committed, lag, commits, redelivered...);
        :class:`NotFoundError` when it has no group subscription of that
        name."""
        return self._core.group_status(group)

    def events(self, prefixes: Prefixes = None, *, name: Optional[str] = None,
               start: StartLike = BEGINNING,
               timeout: Optional[float] = None, group: Optional[str] = None,
               partitions: Optional[int] = None, session: Optional[float] = None,
               batch_max: Optional[int] = None) -> "EventStream":
        """The events of a durable subscription as an iterator::

            with agent.events("orders.", name="audit") as events:
                for event in events:
                    ...

        Exactly once in order, like a handler: an event is checkpointed
        when the loop asks for the next one (or the ``with`` block ends
        without an exception), never before, so an event being processed
        when the process dies is delivered again (``redelivered``).  One
        event is held at a time (the subscription waits for the loop).
        ``timeout`` (seconds) ends the iteration when no event comes for
        that long; by default it waits for ever.  ``group`` and its
        settings make it a consumer group's member, as in :meth:`subscribe`.
        """
        spec = group_spec(group, name, partitions, session, batch_max)
        if group is not None:
            name = group
        elif name is None:
            name = name_for("events-" + "-".join(_prefix_list(prefixes) or ["all"]))
        return EventStream(self._core, name, _prefix_list(prefixes), start, timeout, spec)

    # -- reading the log -------------------------------------------------
    def read(self, topic: str, from_ver: int = 1, to_ver: Optional[int] = None, *,
             handler: Optional[Callable[[Event], Any]] = None,
             timeout: Optional[float] = None) -> EventList:
        """One topic's stream in version order (rehydrate an aggregate), on
        this thread over a connection of its own.  Returns the events (or,
        with ``handler``, calls it for each and returns an empty list);
        ``.last`` is the last version passed."""
        return self._core.read(topic, from_ver, to_ver, handler=handler, timeout=timeout)

    def replay(self, *, from_seq: Optional[int] = None, from_ts: Any = None,
               to_seq: Optional[int] = None, until_ts: Any = None, prefixes: Prefixes = None,
               handler: Optional[Callable[[Event], Any]] = None,
               timeout: Optional[float] = None) -> EventList:
        """A range of the log: from a seq or a time (``from_ts``: datetime or
        Unix ns), to a seq or until a time inclusive (``until_ts``: "as of
        midnight"), for some prefixes.  Returns the events (or calls
        ``handler``); ``.last`` is the highest seq examined (continue from
        ``last + 1``).  A handler that raises stops it and the exception
        propagates."""
        return self._core.replay(from_seq=from_seq, from_ts=from_ts, to_seq=to_seq,
                                 until_ts=until_ts, prefixes=prefixes, handler=handler,
                                 timeout=timeout)

    # -- snapshots and stats ---------------------------------------------
    def save_snapshot(self, name: str, data: Union[bytes, str], seq: int) -> None:
        """Save ``data`` as snapshot ``name`` taken at ``seq`` (atomically:
        a crash leaves the old one or the new one)."""
        self._core.snapshot_save(name, data, seq)

    def load_snapshot(self, name: str) -> Optional[Snapshot]:
        """Snapshot ``name`` (``.seq``, ``.data``), or None when there is
        none; :class:`CorruptStateError` when it fails its check.  Resume
        with ``start=snapshot.seq + 1`` under a new subscription name."""
        return self._core.snapshot_load(name)

    def stats(self) -> Stats:
        """The agent's counters: delivered, published, outbox depth, lag..."""
        return self._core.stats()


class _Channel:
    """The hand-over between a subscription's handler (delivery thread) and
    the thread iterating an :class:`EventStream`.  The core holds it (the
    C agent may call its handler until the agent is closed); the stream
    the user holds does not, so dropping the stream closes it."""

    def __init__(self, core: _Core, name: str, timeout: Optional[float]):
        self.core = core
        self.name = name
        self.timeout = timeout
        self.cond = threading.Condition()
        self.slot: Optional[Event] = None       # offered by the handler
        self.current: Optional[Event] = None    # given to the loop, not yet done
        self.answer: Optional[int] = None
        self.closed = False
        self.error: Optional[BaseException] = None     # raised once by next()

    def fail(self, exc: BaseException) -> None:
        """On the delivery thread: the broker lost events (DataLostError)."""
        with self.cond:
            self.error = exc
            self.cond.notify_all()

    def handler(self, event: Event) -> None:
        """On the delivery thread: offer event, wait for the loop's verdict."""
        with self.cond:
            self.answer = None
            self.slot = event
            self.cond.notify_all()
            while self.answer is None:
                if self.closed:
                    raise Retry()               # not checkpointed; unsubscribe follows
                self.cond.wait(0.1)
            answer = self.answer
        if answer != _lib.OK:
            raise Retry()

    def next(self) -> Optional[Event]:
        with self.cond:
            self.done_with_current()
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            while self.slot is None and not self.closed and self.error is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self.cond.wait(0.1 if left is None else min(left, 0.1))
            if self.error is not None and not self.closed:
                error, self.error = self.error, None
                raise error
            if self.slot is None or self.closed:
                return None
            self.current, self.slot = self.slot, None
            return self.current

    def done_with_current(self) -> None:
        if self.current is not None:
            self.current = None
            self.answer = _lib.OK
            self.cond.notify_all()

    def close(self, commit: bool) -> None:
        with self.cond:
            if self.closed:
                return
            if commit:
                self.done_with_current()
            self.closed = True
            self.cond.notify_all()
        self.core.remove_stream(self)
        self.core.error_sinks.pop(self.name, None)
        if not self.core.closing and not self.core.closed:
            try:
                self.core.unsubscribe(self.name)
            except Exception:
                pass

    def _abandon(self) -> None:
        """The agent is closing: release the handler without a verdict."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class EventStream:
    """The iterator of :meth:`Agent.events` (also a context manager).

    The subscription's handler hands one event at a time to the iterating
    thread and waits until that thread asks for the next one; only then is
    the event checkpointed.  Dropping the stream without closing it stops
    the subscription and leaves the last event to be delivered again.
    """

    def __init__(self, core: _Core, name: str, prefixes: list, start: StartLike,
                 timeout: Optional[float], group: Any = None):
        self.name = name
        self._channel = _Channel(core, name, timeout)
        core.add_stream(self._channel)
        previous = core.error_sinks.get(name)   # a running stream's, if this is refused
        core.error_sinks[name] = self._channel.fail
        try:
            self.subscription: Subscription = core.subscribe(
                name, prefixes, start, self._channel.handler, core.sync_trampoline,
                group=group)
        except BaseException:
            core.remove_stream(self._channel)
            if previous is None:
                core.error_sinks.pop(name, None)
            else:
                core.error_sinks[name] = previous
            self._channel.closed = True
            raise

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        event = self._channel.next()
        if event is None:
            self._channel.close(commit=True)
            raise StopIteration
        return event

    def close(self, commit: bool = True) -> None:
        """End the stream: the event last returned counts as done (unless
        ``commit`` is False: then it is delivered again on the next
        subscribe), and the subscription stops (its checkpoint stays)."""
        self._channel.close(commit)

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.close(commit=exc_type is None)

    def __del__(self) -> None:
        try:
            self._channel.close(commit=False)
        except Exception:
            pass

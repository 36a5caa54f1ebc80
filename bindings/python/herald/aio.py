"""herald.aio - the agent for asyncio.

:class:`AsyncAgent` runs the C agent in dispatch mode (``options.dispatch``
in include/herald.h): the agent's delivery thread keeps ordering,
deduplication and checkpoints, but hands every call into Python to the
event loop, which watches the file descriptor ``herald_agent_fd`` with
``loop.add_reader`` and runs ``herald_agent_dispatch``.  No thread is
blocked per subscription or per publish, and handlers run on the loop's
thread.  A coroutine handler (``async def``) defers its answer
(``herald_agent_defer``/``herald_agent_complete``): the event is
checkpointed when the coroutine returns, and the subscription waits for it
meanwhile, so order and exactly-once hold as with a plain handler.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid
import weakref
from typing import Any, AsyncIterator, Callable, Mapping, Optional, Sequence, Set, Union

from . import _lib, _schema
from ._core import (Data, Prefixes, Subscription, _Core, _prefix_list, group_spec,
                    handled_of, name_for)
from .errors import InvalidArgumentError, Retry, code_of
from .event import _batch_events as batch_events
from .event import (BEGINNING, Event, EventList, GroupStatus, Published, Snapshot,
                    StartLike, Stats, SubscriptionStatus)

DISPATCH_MAX = 256          # calls per turn of the loop, so other tasks get their turn


class AsyncPublishFuture(asyncio.Future):           # type: ignore[type-arg]
    """The future :meth:`AsyncAgent.publish` returns: an ``asyncio.Future``
    of :class:`Published`, with ``id``, the event's id (a ``uuid.UUID``),
    set before it is returned."""

    id: uuid.UUID


class AsyncAgent:
    """The agent for asyncio programs; create it inside a running loop::

        async with herald.AsyncAgent("inventory", state_dir="var/inv") as agent:
            @agent.subscribe("orders.")
            async def on_order(event):
                await agent.publish("stock.A7", {"qty": 2}, type="StockReserved")
            published = await agent.publish("orders.1", {"sku": "A7"})
            async for event in agent.aevents("stock."):
                ...

    Options and semantics are :class:`herald.Agent`'s; handlers (plain or
    ``async def``) run on the loop's thread.  ``publish`` returns an
    asyncio future at once (the event is in the outbox when it returns).
    ``read``, ``replay``, ``flush`` and snapshots run in the loop's
    default executor (they block on the broker or the disk).
    """

    def __init__(self, service_id: str, *,
                 state_dir: Union[str, "os.PathLike[str]", None],
                 api: Union[str, Sequence[str]] = "tcp://127.0.0.1:5580",
                 fanout: Union[str, Sequence[str], None] = None,
                 timeout: float = 5.0,
                 on_error: Optional[Callable[[str, BaseException], Any]] = None,
                 **options: Any):
        self._loop = asyncio.get_running_loop()
        self._core = _Core(service_id, state_dir=state_dir, api=api, fanout=fanout,
                           timeout=timeout, on_error=on_error, dispatch=True, **options)
        self._tasks: Set["asyncio.Task[Any]"] = set()
        self._interrupt: Optional[BaseException] = None
        self._fd = _lib.lib.herald_agent_fd(self._core.ptr)
        self._loop.add_reader(self._fd, self._dispatch)

    def _dispatch(self) -> int:
        core = self._core
        if core.closed:
            return 0
        core.enter()
        try:
            ran = _lib.lib.herald_agent_dispatch(core.ptr, DISPATCH_MAX)
        finally:
            core.leave()
        if self._interrupt is not None:         # KeyboardInterrupt in a handler
            interrupt, self._interrupt = self._interrupt, None
            raise interrupt
        return ran

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        """Stop the agent and free it (see :meth:`herald.Agent.close`).
        Coroutine handlers still running are cancelled; their events are
        delivered again on the next subscribe.  Idempotent."""
        if self._core.closed:
            return
        if self._core.in_handler():
            raise InvalidArgumentError("an agent cannot be closed from its own handler")
        self._loop.remove_reader(self._fd)
        for task in list(self._tasks):
            task.cancel()
        self._core.close()

    async def aclose(self) -> None:
        """:meth:`close` as a coroutine."""
        self.close()

    @property
    def closed(self) -> bool:
        return self._core.closed

    async def __aenter__(self) -> "AsyncAgent":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<herald.AsyncAgent %s%s>" % (self._core.service_id,
                                             " closed" if self.closed else "")

    # -- publishing ------------------------------------------------------
    def publish(self, topic: str, data: Data = b"", *, type: Optional[str] = None,
                schema: Optional[int] = None, meta: Optional[Mapping[str, str]] = None,
                expect: Optional[int] = None, id: Union[None, uuid.UUID, bytes] = None
                ) -> "AsyncPublishFuture":
        """Queue one event in the outbox and return an
        :class:`AsyncPublishFuture` (an asyncio future) of its
        :class:`Published` (or the exception :meth:`herald.Agent.publish`
        would raise); its ``id`` is the event's id, known at once.  Await
        it, or not: the event is sent either way, and the future is
        resolved by :meth:`close` at the latest (an event not acknowledged
        by then: :class:`herald.TimeoutError`, queued in the outbox).
        Awaiting it from a handler is safe (completions do not wait for
        handlers)."""
        future = AsyncPublishFuture(loop=self._loop)

        def resolve(value: Any) -> None:        # on the loop's thread (dispatch, close)
            if future.done() or self._loop.is_closed():
                return
            if isinstance(value, BaseException):
                future.set_exception(value)
            else:
                future.set_result(value)
        future.id = self._core.publish_async(topic, data, type, schema, meta, expect, id,
                                             resolve)
        return future

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Wait until everything published is acknowledged or refused and
        every :meth:`publish` future of it is resolved."""
        await self._loop.run_in_executor(None, self._core.flush, timeout)
        # The C flush leaves the completions queued for dispatch (this
        # loop's thread): run them before returning (they come first in
        # each turn; bounded, in case handlers keep coming too)
        for _turn in range(64):
            if self._dispatch() < DISPATCH_MAX:
                break

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
        """As :meth:`herald.Agent.subscribe` (also a decorator, ``group=``
        makes it a consumer group's member, ``schemas=`` converts events
        to the schemas the handler understands); the handler may be
        ``async def``: the event is done when its coroutine returns.
        Raise :class:`herald.Retry` to have it offered again; any other
        exception stops the subscription, reported to ``on_error``.
        ``start=herald.NOW`` or a datetime asks the broker, which blocks
        the loop for that round trip.  ``batch=True``: the handler gets a
        list of events (as :meth:`herald.Agent.subscribe`); an ``async
        def`` one is awaited once per batch.  ``caller_position=True``: the
        caller keeps the position (as :meth:`herald.Agent.subscribe`)."""
        if handler is None and callable(prefixes):
            handler, prefixes = prefixes, None
        spec = group_spec(group, name, partitions, session, batch_max)
        schema_spec = _schema.schema_spec(schemas, default_schema, on_incompatible, on_parked)
        if handler is None:
            def decorate(function: Callable[[Event], Any]) -> Callable[[Event], Any]:
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
        return self._core.subscribe(name, _prefix_list(prefixes), start, handler,
                                    self._batch_trampoline if batch else self._trampoline,
                                    group=spec, batch=batch, schemas=schema_spec,
                                    caller_position=caller_position)

    def _batch_trampoline(self, sub: Subscription):
        core = self._core

        def call(batch_p, _arg) -> int:
            core.enter()
            batch = batch_p.contents
            try:
                result = sub.handler(batch_events(batch))
                if inspect.isawaitable(result):
                    return self._defer(sub, result, batch_p)
                batch.handled = handled_of(result, batch.count)
                return _lib.OK
            except Retry as exc:
                batch.handled = handled_of(exc.handled, batch.count, 0)
                return _lib.RETRY
            except Exception as exc:
                sub.exception = exc
                batch.handled = handled_of(getattr(exc, "handled", 0), batch.count, 0)
                return code_of(exc)
            except BaseException as exc:        # KeyboardInterrupt: re-raised after
                self._interrupt = exc
                batch.handled = 0
                return _lib.RETRY
            finally:
                core.leave()
        return _lib.BATCH_HANDLER_FN(call)

    def _trampoline(self, sub: Subscription):
        core = self._core

        def call(view_p, _arg) -> int:
            core.enter()
            try:
                result = sub.handler(Event._from_view(view_p.contents))
                if inspect.isawaitable(result):
                    return self._defer(sub, result)
                return _lib.OK
            except Retry:
                return _lib.RETRY
            except Exception as exc:
                sub.exception = exc
                return code_of(exc)
            except BaseException as exc:        # KeyboardInterrupt: re-raised after
                self._interrupt = exc
                return _lib.RETRY
            finally:
                core.leave()
        return _lib.HANDLER_FN(call)

    def _defer(self, sub: Subscription, awaitable: Any, batch_p: Any = None) -> int:
        """batch_p: a batch handler's herald_delivery_batch_t, valid until
        the call is deferred (it may be abandoned after)."""
        count = batch_p.contents.count if batch_p is not None else None
        ticket = _lib.lib.herald_agent_defer(self._core.ptr)
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)

        def done(task: "asyncio.Task[Any]") -> None:
            self._tasks.discard(task)
            if self._core.closed or task.cancelled():
                if not self._core.closed:
                    _lib.lib.herald_agent_complete(self._core.ptr, ticket, _lib.RETRY)
                return
            exc = task.exception()
            if exc is None:
                rc = _lib.OK
            elif isinstance(exc, Retry):
                rc = _lib.RETRY
            else:
                sub.exception = exc
                rc = code_of(exc)
            if count is not None:
                # Not through batch_p: the batch is gone if the call was abandoned
                if exc is None:
                    handled = handled_of(task.result(), count)
                else:
                    handled = handled_of(getattr(exc, "handled", 0), count, 0)
                _lib.lib.herald_agent_complete_batch(self._core.ptr, ticket, rc, handled)
                return
            # NOT_FOUND: abandoned (unsubscribed meanwhile): nothing to do
            _lib.lib.herald_agent_complete(self._core.ptr, ticket, rc)
        task.add_done_callback(done)
        return _lib.DEFER

    # -- schema evolution (docs/schemas.md; _schema.py) ---------------------
    def upcaster(self, type: str, from_schema: int, *, codec: Optional[str] = None
                 ) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        """As :meth:`herald.Agent.upcaster`: a plain function (not async),
        run on the agent's delivery thread, not on the loop."""
        _schema.check_codec(codec)
        def decorate(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
            _schema.register(self._core, type, from_schema, function, codec, down=False)
            return function
        return decorate

    def downcaster(self, type: str, from_schema: int, *, codec: Optional[str] = None
                   ) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        """As :meth:`herald.Agent.downcaster`."""
        _schema.check_codec(codec)
        def decorate(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
            _schema.register(self._core, type, from_schema, function, codec, down=True)
            return function
        return decorate

    def parked(self, name: str) -> "list":
        """As :meth:`herald.Agent.parked` (reads a local file: no wait)."""
        return _schema.parked(self._core, name)

    async def replay_parked(self, name: str, handler: Callable[[Event], Any]) -> int:
        """As :meth:`herald.Agent.replay_parked`, in the default executor
        (handler is a plain function, run there)."""
        return await self._loop.run_in_executor(
            None, lambda: _schema.replay_parked(self._core, name, handler))

    def schema_stats(self, name: Optional[str] = None) -> "_schema.SchemaStats":
        """As :meth:`herald.Agent.schema_stats`."""
        return _schema.schema_stats(self._core, name)

    def unsubscribe(self, name: str) -> None:
        """Stop subscription ``name`` (its checkpoint stays)."""
        self._core.unsubscribe(name)

    def subscription(self, name: str) -> SubscriptionStatus:
        """Subscription ``name``'s state, checkpoint and counters."""
        return self._core.sub_status(name)

    def group_status(self, group: str) -> GroupStatus:
        """As :meth:`herald.Agent.group_status`."""
        return self._core.group_status(group)

    def aevents(self, prefixes: Prefixes = None, *, name: Optional[str] = None,
                start: StartLike = BEGINNING,
                timeout: Optional[float] = None, group: Optional[str] = None,
                partitions: Optional[int] = None, session: Optional[float] = None,
                batch_max: Optional[int] = None) -> "AsyncEventStream":
        """The events of a durable subscription as an async iterator::

            async with agent.aevents("orders.", name="audit") as events:
                async for event in events:
                    ...

        As :meth:`herald.Agent.events`: an event is checkpointed when the
        loop asks for the next one (or the block ends cleanly); ``timeout``
        ends the iteration after that many idle seconds; ``group`` as in
        :meth:`subscribe`."""
        spec = group_spec(group, name, partitions, session, batch_max)
        if group is not None:
            name = group
        elif name is None:
            name = name_for("events-" + "-".join(_prefix_list(prefixes) or ["all"]))
        return AsyncEventStream(self, name, _prefix_list(prefixes), start, timeout, spec)

    # -- reading the log -------------------------------------------------
    async def read(self, topic: str, from_ver: int = 1, to_ver: Optional[int] = None, *,
                   timeout: Optional[float] = None) -> EventList:
        """As :meth:`herald.Agent.read`, in the default executor."""
        return await self._loop.run_in_executor(
            None, lambda: self._core.read(topic, from_ver, to_ver, timeout=timeout))

    async def replay(self, *, from_seq: Optional[int] = None, from_ts: Any = None,
                     to_seq: Optional[int] = None, until_ts: Any = None,
                     prefixes: Prefixes = None, timeout: Optional[float] = None) -> EventList:
        """As :meth:`herald.Agent.replay`, in the default executor."""
        return await self._loop.run_in_executor(
            None, lambda: self._core.replay(from_seq=from_seq, from_ts=from_ts, to_seq=to_seq,
                                            until_ts=until_ts, prefixes=prefixes,
                                            timeout=timeout))

    async def save_snapshot(self, name: str, data: Union[bytes, str], seq: int) -> None:
        """As :meth:`herald.Agent.save_snapshot` (it fsyncs: in the executor)."""
        await self._loop.run_in_executor(None, self._core.snapshot_save, name, data, seq)

    async def load_snapshot(self, name: str) -> Optional[Snapshot]:
        """As :meth:`herald.Agent.load_snapshot`."""
        return await self._loop.run_in_executor(None, self._core.snapshot_load, name)

    def stats(self) -> Stats:
        """The agent's counters."""
        return self._core.stats()


class AsyncEventStream:
    """The async iterator of :meth:`AsyncAgent.aevents`.  Each event's
    handler call is deferred until the loop asks for the next event."""

    def __init__(self, agent: AsyncAgent, name: str, prefixes: list, start: StartLike,
                 timeout: Optional[float], group: Any = None):
        self._agent = agent
        self.name = name
        self._timeout = timeout
        self._ready: "asyncio.Future[None]" = agent._loop.create_future()
        self._slot: Optional[tuple] = None      # (ticket, event) offered
        self._current: Optional[int] = None     # ticket given to the loop
        self._closed = False
        self._error: Optional[BaseException] = None    # raised once by __anext__
        ref = weakref.ref(self)

        def fail(exc: BaseException) -> None:  # on the loop's thread (dispatch)
            stream = ref()
            if stream is not None and not stream._closed:
                stream._error = exc
                if not stream._ready.done():
                    stream._ready.set_result(None)
        previous = agent._core.error_sinks.get(name)   # a running stream's
        agent._core.error_sinks[name] = fail
        try:
            self.subscription = agent._core.subscribe(name, prefixes, start, self._offer,
                                                      self._trampoline, group=group)
        except BaseException:                   # refused: nothing of it is left
            if previous is None:
                agent._core.error_sinks.pop(name, None)
            else:
                agent._core.error_sinks[name] = previous
            self._closed = True
            raise

    def _trampoline(self, sub: Subscription):
        # The C agent keeps this callback until it is closed; it holds the
        # stream weakly, so a stream dropped unclosed is collected (and its
        # __del__ stops the subscription)
        core = self._agent._core
        ref = weakref.ref(self)

        def call(view_p, _arg) -> int:
            self = ref()
            core.enter()
            try:
                if self is None or self._closed:
                    return _lib.RETRY
                ticket = _lib.lib.herald_agent_defer(core.ptr)
                self._slot = (ticket, Event._from_view(view_p.contents))
                if not self._ready.done():
                    self._ready.set_result(None)
                return _lib.DEFER
            except BaseException as exc:
                sub.exception = exc
                return code_of(exc)
            finally:
                core.leave()
        return _lib.HANDLER_FN(call)

    @staticmethod
    def _offer(event: Event) -> None:          # never called: the trampoline is ours
        raise AssertionError("unreachable")

    def _done_with_current(self, rc: int = _lib.OK) -> None:
        if self._current is not None and not self._agent._core.closed:
            _lib.lib.herald_agent_complete(self._agent._core.ptr, self._current, rc)
        self._current = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        self._done_with_current()
        if self._slot is None and self._error is None:
            if self._ready.done():
                self._ready = self._agent._loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._ready), self._timeout)
            except asyncio.TimeoutError:
                await self.aclose()
                raise StopAsyncIteration
        if self._error is not None and not self._closed:
            error, self._error = self._error, None
            raise error
        if self._slot is None:                  # closed meanwhile
            raise StopAsyncIteration
        (self._current, event), self._slot = self._slot, None
        return event

    async def aclose(self, commit: bool = True) -> None:
        """End the stream: the event last returned counts as done (unless
        ``commit`` is False) and the subscription stops."""
        if self._closed:
            return
        if commit:
            self._done_with_current()
        self._closed = True
        self._agent._core.error_sinks.pop(self.name, None)
        if not self._ready.done():
            self._ready.set_result(None)
        if not self._agent._core.closed:
            try:
                self._agent._core.unsubscribe(self.name)
            except Exception:
                pass

    def __del__(self) -> None:
        try:
            if not self._closed and not self._agent._core.closed:
                self._closed = True
                self._agent._core.unsubscribe(self.name)
        except Exception:
            pass

    async def __aenter__(self) -> "AsyncEventStream":
        return self

    async def __aexit__(self, exc_type: Any, *rest: Any) -> None:
        await self.aclose(commit=exc_type is None)

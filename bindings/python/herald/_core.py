"""_core - what the synchronous and the asyncio agents share.

Internal.  A ``_Core`` owns one C agent (``herald_agent_t``) and the ctypes
callbacks it was given, turns Python arguments into the C structs and C
results into Python values and exceptions.

Lifetime: every open core is in ``_OPEN``; an ``atexit`` hook closes those
still open when the interpreter exits, before it finalizes, so no agent
thread calls into a dying interpreter (and none is left to hang the exit).

Fork: a forked child inherits the C agent's memory but none of its threads
(they exist only in the parent) and shares its sockets and files with the
parent.  Used there, it would wait for ever for an I/O thread that is not
running, write into the parent's outbox, or (at exit) join threads that
are not its own.  So an ``os.register_at_fork`` hook marks every open core
as forked in the child and forgets them: each call on one then raises
``ForkedAgentError`` before touching C (also its copies of the parent's
pending futures fail with it), ``close()`` only lets go of it, and the exit
hook leaves it alone.  The process id is compared too, for a fork that
bypassed Python's hooks.  The parent's agent is untouched.
An agent object dropped without ``close()`` keeps running, like a thread,
until then: its subscriptions are live work.  A core is never destroyed
from one of its own handlers (the C agent forbids it; ``close`` refuses).
"""

from __future__ import annotations

import atexit
import ctypes
import json
import logging
import os
import re
import threading
import uuid
from ctypes import POINTER, byref, c_char_p, c_size_t, c_uint64, c_void_p
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set,
                    Union)

from . import _lib, _schema
from .errors import (ConflictError, ForkedAgentError, HeraldError, IdReusedError,
                     InvalidArgumentError, Retry, TimeoutError, check, code_of, make_error)
from .event import _batch_events as batch_events
from .event import (Event, EventList, GroupStatus, Published, Snapshot, Stats, StartLike,
                    SubscriptionStatus, group_status_from, published_from, stats_from,
                    status_from, to_ns, to_start)

log = logging.getLogger("herald")

Data = Union[bytes, bytearray, memoryview, str, dict, list]
Prefixes = Union[None, str, Iterable[str]]

_OPEN: Set["_Core"] = set()
_OPEN_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    """In a forked child (single-threaded here): every inherited core is the
    parent's.  Nothing that may block: another thread of the parent may
    have held any lock at the fork."""
    global _OPEN_LOCK
    _OPEN_LOCK = threading.Lock()
    for core in list(_OPEN):
        core._forked = True
    _OPEN.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_all() -> None:
    with _OPEN_LOCK:
        cores = list(_OPEN)
    for core in cores:
        try:
            core.close(at_exit=True)
        except Exception:                       # pragma: no cover - best effort
            log.exception("herald: closing an agent at exit")


def _ms(seconds: Optional[float]) -> int:
    if seconds is None:
        return 0
    if seconds < 0:
        raise ValueError("a timeout is >= 0 seconds")
    return max(1, int(seconds * 1000))


def _prefix_list(prefixes: Prefixes) -> List[str]:
    if prefixes is None:
        return []
    if isinstance(prefixes, str):
        return [prefixes]
    return [str(p) for p in prefixes]


def _c_strings(strings: Sequence[str]):
    """A NULL-terminated char *[] (kept alive by the returned array)."""
    array = (c_char_p * (len(strings) + 1))()
    for index, text in enumerate(strings):
        array[index] = text.encode("utf-8")
    array[len(strings)] = None
    return array


# The C agent's delivery thread is not a Python thread: ctypes makes a new
# Python thread state for every callback from it and frees it after
# (PyGILState_Ensure/Release), about 9-14 us per call, most of a per-event
# handler's cost (docs/python.md, "Where the time goes").  One more
# PyGILState_Ensure, never released, on the first call from such a thread
# keeps its thread state for the thread's life: later callbacks only take
# the GIL.  The thread state is freed with the interpreter.
_pinned = threading.local()


def pin_thread() -> None:
    if not getattr(_pinned, "done", False):
        if threading.current_thread().__class__ is threading._DummyThread:
            ctypes.pythonapi.PyGILState_Ensure()
        _pinned.done = True


def handled_of(value: Any, count: int, default: Optional[int] = None) -> int:
    """A batch handler's answer as herald_delivery_batch_t.handled: an int
    (clamped to 0..count), or default (None: count) for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, min(value, count))
    return count if default is None else default


def name_for(text: str) -> str:
    """A valid subscription name (1-128 bytes of [A-Za-z0-9._-]) from text."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip(".")[:128]
    return name or "subscription"


def encode_data(data: Data) -> bytes:
    """The bytes to publish: bytes-likes as they are, str as UTF-8, a dict
    or list as JSON (UTF-8)."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (dict, list)):
        return json.dumps(data, separators=(",", ":")).encode("utf-8")
    raise TypeError("data: bytes, str, or a dict/list (sent as JSON), not %s"
                    % type(data).__name__)


class _Outgoing:
    """A herald_outgoing_t and the Python objects its pointers borrow."""

    def __init__(self, topic: str, data: Data, type: Optional[str], schema: Optional[int],
                 meta: Optional[Mapping[str, str]], expect: Optional[int],
                 id: Union[None, uuid.UUID, bytes]):
        if not isinstance(topic, str):
            raise TypeError("topic: a str")
        self.topic = topic
        self._keep: List[Any] = []
        out = _lib.Outgoing()
        out.topic = topic.encode("utf-8")
        payload = encode_data(data)
        self._keep.append(payload)
        out.data = ctypes.cast(c_char_p(payload), c_void_p) if payload else None
        out.data_len = len(payload)
        out.type = type.encode("utf-8") if type is not None else None
        out.schema = int(schema) if schema else 0
        if meta:
            entries = (_lib.Meta * len(meta))()
            for index, (key, value) in enumerate(meta.items()):
                k, v = str(key).encode("utf-8"), str(value).encode("utf-8")
                self._keep += [k, v]
                entries[index].key = ctypes.cast(c_char_p(k), c_void_p)
                entries[index].key_len = len(k)
                entries[index].value = ctypes.cast(c_char_p(v), c_void_p)
                entries[index].value_len = len(v)
            self._keep.append(entries)
            out.meta = entries
            out.meta_count = len(meta)
        if expect is not None:
            out.has_expect = True
            out.expect = int(expect)
        if id is not None:
            raw = id.bytes if isinstance(id, uuid.UUID) else bytes(id)
            if len(raw) != 16:
                raise ValueError("id: a uuid.UUID or 16 bytes")
            self._keep.append(raw)
            out.id = ctypes.cast(c_char_p(raw), c_void_p)
        self.struct = out


def publish_error(code: int, result: "_lib.PublishResult", topic: str,
                  message: Optional[str] = None) -> HeraldError:
    """The exception for a failed publish, with what the result says."""
    event_id = uuid.UUID(bytes=bytes(result.id))
    if message is None:
        message = result.message.decode("utf-8", "replace") or None
    if code == _lib.ERR_CONFLICT:
        return ConflictError(message or "conflict: expected version %d, the topic is at %d"
                             % (result.expected, result.actual),
                             expected=result.expected, actual=result.actual, topic=topic,
                             id=event_id)
    if code == _lib.ERR_TIMEOUT:
        return TimeoutError(message or "no acknowledgement in time: the event is queued in "
                            "the outbox and will be sent with the same id", id=event_id)
    if code == _lib.ERR_ID_REUSED:
        return IdReusedError(message or "id %s is already stored, at seq %d, with another "
                             "topic or data: this event was not stored"
                             % (event_id, result.seq), id=event_id, seq=result.seq,
                             topic=topic or None)
    return make_error(code, message)


class GroupSpec:
    """A group subscription's settings, checked: where the group keeps its
    position and how it shares the work (herald_group_options_t).  Each
    None takes the library's default (32 partitions, a 3 s session, 100
    events a batch); partitions and session only matter to the member
    whose join creates the group."""

    def __init__(self, partitions: Optional[int] = None, session: Optional[float] = None,
                 batch_max: Optional[int] = None):
        for label, value in (("partitions", partitions), ("batch_max", batch_max)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 1):
                raise ValueError("%s: an int >= 1 (or None: the default), not %r"
                                 % (label, value))
        if session is not None and (isinstance(session, bool)
                                    or not isinstance(session, (int, float))
                                    or not session > 0):
            raise ValueError("session: seconds > 0 (or None: the default), not %r"
                             % (session,))
        self.partitions = partitions
        self.session = session
        self.batch_max = batch_max


def group_spec(group: Optional[str], name: Optional[str], partitions: Optional[int],
               session: Optional[float], batch_max: Optional[int]) -> Optional[GroupSpec]:
    """The GroupSpec of subscribe's keywords (None: a local subscription)."""
    if group is None:
        if partitions is not None or session is not None or batch_max is not None:
            raise ValueError("partitions, session and batch_max are a consumer group's "
                             "settings: give group= too")
        return None
    if not isinstance(group, str):
        raise TypeError("group: a str, the group's name")
    if name is not None and name != group:
        raise ValueError("a group subscription's name is its group's (%r): give group= or "
                         "name=, not both" % group)
    return GroupSpec(partitions, session, batch_max)


class Subscription:
    """A running subscription: ``name`` (durable: its checkpoint; for a
    group subscription, the group's name), the ``prefixes`` it matches, the
    ``handler``; ``group`` is the consumer group's name, or None for a
    local subscription.  ``exception`` holds what the handler raised when
    that failed the subscription."""

    def __init__(self, core: "_Core", name: str, prefixes: List[str],
                 handler: Callable[[Event], Any], group: Optional[str] = None):
        self._core = core
        self.name = name
        self.prefixes = prefixes
        self.handler = handler
        self.group = group
        self.exception: Optional[BaseException] = None
        self._c_handler = None                  # the ctypes callback, kept alive

    def status(self) -> SubscriptionStatus:
        """State, checkpoint and counters (herald_agent_sub_status)."""
        return self._core.sub_status(self.name)

    def group_status(self) -> GroupStatus:
        """A group subscription's member figures (herald_agent_group_status);
        :class:`NotFoundError` for a local subscription."""
        return self._core.group_status(self.name)

    def unsubscribe(self) -> None:
        """Stop delivering (the checkpoint stays: subscribing again under
        this name resumes).  From the subscription's own handler too."""
        self._core.unsubscribe(self.name)

    def __repr__(self) -> str:
        return "<herald.Subscription %s %r>" % (self.name, self.prefixes)


def _endpoints(name: str, value: Union[str, Sequence[str]]) -> bytes:
    """One endpoint or a cluster's list (a list, or a comma-separated str),
    as the C agent takes it: comma-separated."""
    if isinstance(value, str):
        return value.encode()
    items = list(value)
    if not items or not all(isinstance(item, str) and item and "," not in item
                            for item in items):
        raise ValueError("%s: give an endpoint, or a list of endpoints (str, no comma): %r"
                         % (name, value))
    return ",".join(items).encode()


class _Core:
    def __init__(self, service_id: str, *,
                 state_dir: Union[str, "os.PathLike[str]", None],
                 api: Union[str, Sequence[str]] = "tcp://127.0.0.1:5580",
                 fanout: Union[str, Sequence[str], None] = None,
                 timeout: float = 5.0, heartbeat: Optional[float] = None,
                 dedup_window: Optional[int] = None, live_buffer: Optional[int] = None,
                 outbox_max_events: Optional[int] = None,
                 outbox_max_bytes: Optional[int] = None, outbox_fsync: bool = False,
                 sync_interval: Optional[float] = None, retry_max: Optional[float] = None,
                 sub_rcvhwm: Optional[int] = None,
                 on_error: Optional[Callable[[str, BaseException], Any]] = None,
                 dispatch: bool = False,
                 key_file: Union[str, "os.PathLike[str]", None] = None,
                 server_key: Optional[str] = None):
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0                        # calls in C from threads not the agent's
        self._ptr: Optional[int] = None
        self._closing = False
        self._user_on_error = on_error
        self.subscriptions: Dict[str, Subscription] = {}
        self._keep: List[Any] = []              # ctypes callbacks C may still call
        self._pending: Dict[int, Callable[[Any], None]] = {}
        self._next_key = 1
        self._streams: Set[Any] = set()
        # name -> fn(exception): iterators that raise a DataLostError to their loop
        self.error_sinks: Dict[str, Callable[[BaseException], None]] = {}
        self._local = threading.local()         # depth of user code run by the agent
        self._pid = os.getpid()                 # the process the C agent runs in
        self._forked = False                    # set in a forked child (see above)
        self.service_id = service_id
        options = _lib.Options()
        _lib.lib.herald_agent_options_init(byref(options))
        options.api = _endpoints("api", api)
        options.fanout = _endpoints("fanout", fanout) if fanout else None
        #  None: no local state; only group subscriptions (the C agent refuses
        #  a local one), and unacknowledged publishes live in memory only
        options.state_dir = os.fsencode(state_dir) if state_dir is not None else None
        options.timeout_ms = _ms(timeout)
        options.heartbeat_ms = _ms(heartbeat)
        options.dedup_window = dedup_window or 0
        options.live_buffer = live_buffer or 0
        options.outbox_max_events = outbox_max_events or 0
        options.outbox_max_bytes = outbox_max_bytes or 0
        options.outbox_fsync = bool(outbox_fsync)
        options.sync_interval_ms = _ms(sync_interval)
        options.retry_max_ms = _ms(retry_max)
        options.sub_rcvhwm = sub_rcvhwm or 0
        self._c_on_error = _lib.ON_ERROR_FN(self._on_error)
        options.on_error = self._c_on_error
        options.dispatch = dispatch
        # Security: the C library reads no environment; the binding, like
        # the herald tool, takes HERALD_KEY / HERALD_SERVER_KEY (a path, and
        # a public key or @path: never a secret) when no argument is given
        if key_file is None:
            key_file = os.environ.get("HERALD_KEY") or None
        if server_key is None:
            server_key = os.environ.get("HERALD_SERVER_KEY") or None
        options.key_file = os.fsencode(key_file) if key_file is not None else None
        options.server_key = server_key.encode("utf-8") if server_key is not None else None
        self._c_published = _lib.PUBLISH_FN(self._on_published)
        ptr = _lib.lib.herald_agent_new(service_id.encode("utf-8"), byref(options))
        if not ptr:
            code, message = _lib.last_error()
            raise make_error(code or _lib.ERR_INVALID, message)
        self._ptr = ptr
        with _OPEN_LOCK:
            _OPEN.add(self)

    # -- lifecycle -------------------------------------------------------
    def _check_process(self) -> None:
        """Raise ForkedAgentError in a process forked from the agent's.  No
        lock is taken first: a forked child may find any of them held."""
        if not self._forked and self._pid == os.getpid():
            return
        self._forked = True
        error = ForkedAgentError(
            "this agent belongs to process %d, the parent of this process (%d): an agent "
            "cannot be used across fork; make a new Agent in the child, with its own "
            "state_dir" % (self._pid, os.getpid()))
        pending, self._pending = list(self._pending.values()), {}
        for resolve in pending:                 # the child's copies of the parent's futures
            try:
                resolve(error)
            except Exception:
                pass
        raise error

    @property
    def ptr(self) -> int:
        self._check_process()
        ptr = self._ptr
        if ptr is None:
            raise InvalidArgumentError("the agent is closed")
        return ptr

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """function(agent pointer, *args), the C agent guaranteed alive for the
        duration: close() waits for calls in progress on other threads (the
        C agent must not be destroyed under one) and refuses new ones.  The
        agent's own threads (handlers) are covered by destroy, which lets a
        running handler finish."""
        self._check_process()
        if self.in_handler():
            return function(self.ptr, *args)
        with self._lock:
            if self._ptr is None or self._closing:
                raise InvalidArgumentError("the agent is closed")
            self._active += 1
            ptr = self._ptr
        try:
            return function(ptr, *args)
        finally:
            with self._lock:
                self._active -= 1
                if not self._active:
                    self._idle.notify_all()

    @property
    def closed(self) -> bool:
        return self._ptr is None

    @property
    def closing(self) -> bool:
        return self._closing

    def in_handler(self) -> bool:
        """True on a thread running one of this agent's handlers or callbacks."""
        return getattr(self._local, "depth", 0) > 0

    def enter(self) -> None:
        self._local.depth = getattr(self._local, "depth", 0) + 1

    def leave(self) -> None:
        self._local.depth -= 1

    def close(self, at_exit: bool = False) -> None:
        """Stop the agent and free it (idempotent).  Unacknowledged publishes
        stay in the outbox; their futures fail with TimeoutError.  In a
        forked child, only let go of the parent's agent (nothing of it runs
        here to stop; the parent's goes on)."""
        if self._forked or self._pid != os.getpid():
            try:
                self._check_process()
            except ForkedAgentError:
                pass
            self._ptr = None
            return
        with self._lock:
            if self._ptr is None:
                return
            if self.in_handler():
                raise InvalidArgumentError("an agent cannot be closed from its own handler")
            self._closing = True
            streams = list(self._streams)
        for stream in streams:                  # release handlers waiting on them
            stream._abandon()
        with self._lock:                        # calls in progress on other threads
            while self._active:
                self._idle.wait()
        ptr = c_void_p(self._ptr)
        _lib.lib.herald_agent_destroy(byref(ptr))      # GIL released while it joins
        with self._lock:
            self._ptr = None
            pending, self._pending = list(self._pending.values()), {}
        with _OPEN_LOCK:
            _OPEN.discard(self)
        # destroy has called every completion (the broker's answer, or
        # TimeoutError "queued in the outbox"): nothing is left here unless
        # the C agent broke its promise, which is then said loudly
        if pending:
            log.error("herald: %d publish futures had no completion from the agent",
                      len(pending))
        for resolve in pending:
            try:
                resolve(make_error(_lib.ERR_INTERNAL, "the agent was closed and gave no "
                                   "answer for this publish: whether it was stored is "
                                   "unknown (replay the log to find its id)"))
            except Exception:                   # e.g. the future's event loop is closed
                pass

    # -- errors from the C agent -----------------------------------------
    def _on_error(self, name: bytes, code: int, message: bytes, _arg) -> None:
        self.enter()
        try:
            self._report(name, code, message)
        finally:
            self.leave()

    def _report(self, name: bytes, code: int, message: bytes) -> None:
        sub_name = name.decode("utf-8", "replace") if name else ""
        sub = self.subscriptions.get(sub_name)
        exc = sub.exception if sub and sub.exception else make_error(
            code, message.decode("utf-8", "replace") if message else None)
        # DATA_LOST does not stop the subscription (its checkpoint was rewound
        # and it goes on): an iterator over it raises the error once, to its loop.
        # TRIMMED stopped it (its catch-up needs trimmed events): the iterator
        # raises it rather than wait for events that will not come
        sink = self.error_sinks.get(sub_name) \
            if code in (_lib.ERR_DATA_LOST, _lib.ERR_TRIMMED) else None
        try:
            if sink:
                sink(exc)
            if self._user_on_error:
                self._user_on_error(sub_name, exc)
            elif code == _lib.ERR_DATA_LOST:
                log.warning("herald: subscription %s: %s", sub_name, exc)
            else:
                #  Not always fatal: a catch-up replay the broker could not
                #  read is retried (docs/agent.md, "Stats and status")
                log.error("herald: subscription %s: %s", sub_name, exc,
                          exc_info=exc if sub and sub.exception else None)
        except BaseException:                   # never into C
            log.exception("herald: on_error raised")

    # -- publishing ------------------------------------------------------
    def publish(self, topic: str, data: Data = b"", *, type: Optional[str] = None,
                schema: Optional[int] = None, meta: Optional[Mapping[str, str]] = None,
                expect: Optional[int] = None, id: Union[None, uuid.UUID, bytes] = None,
                timeout: Optional[float] = None) -> Published:
        out = _Outgoing(topic, data, type, schema, meta, expect, id)
        result = _lib.PublishResult()
        code = self.call(_lib.lib.herald_agent_publish, byref(out.struct), byref(result),
                         _ms(timeout))
        if code != _lib.OK:
            _, message = _lib.last_error()
            raise publish_error(code, result, topic, message)
        return published_from(result)

    def publish_async(self, topic: str, data: Data, type: Optional[str],
                      schema: Optional[int], meta: Optional[Mapping[str, str]],
                      expect: Optional[int], id: Union[None, uuid.UUID, bytes],
                      resolve: Callable[[Any], None]) -> uuid.UUID:
        """Queue; returns the event's id.  resolve(Published or exception) is
        called exactly once: when the broker answers, or by close() (the C
        agent's destroy) with TimeoutError while it is queued in the outbox;
        possibly before this returns, on the agent's thread."""
        self._check_process()                   # before taking a lock a fork may have held
        out = _Outgoing(topic, data, type, schema, meta, expect, id)
        id_out = (ctypes.c_uint8 * 16)()
        with self._lock:
            key = self._next_key
            self._next_key += 1
            self._pending[key] = resolve
        code = self.call(_lib.lib.herald_agent_publish_async, byref(out.struct),
                         self._c_published, key, id_out)
        if code != _lib.OK:
            with self._lock:
                self._pending.pop(key, None)
            raise make_error(code)
        return uuid.UUID(bytes=bytes(id_out))

    def _on_published(self, result_p, arg) -> None:
        self.enter()
        try:
            with self._lock:
                resolve = self._pending.pop(arg or 0, None)
            if resolve is None:
                return
            result = result_p.contents
            if result.err == _lib.OK:
                resolve(published_from(result))
            else:
                resolve(publish_error(result.err, result, ""))
        except BaseException:
            log.exception("herald: a publish completion raised")
        finally:
            self.leave()

    def flush(self, timeout: Optional[float] = None) -> None:
        check(self.call(_lib.lib.herald_agent_flush, _ms(timeout)))

    # -- subscribing -----------------------------------------------------
    def subscribe(self, name: str, prefixes: List[str], start: StartLike,
                  handler: Callable[[Event], Any], trampoline,
                  group: Optional[GroupSpec] = None, schemas=None,
                  batch: bool = False, caller_position: bool = False) -> Subscription:
        """trampoline(sub) -> a ctypes HANDLER_FN (BATCH_HANDLER_FN when
        batch) calling handler.  With group, a member of consumer group
        `name` (herald_agent_subscribe_group).  With schemas (a
        _schema.SchemaSpec) or caller_position, through
        herald_agent_subscribe_with (herald_agent_subscribe_batch_with)."""
        start_c = to_start(start)
        if batch and not _lib.has_batch:
            raise make_error(_lib.ERR_UNSUPPORTED,
                             "%s has no batch handlers (herald_agent_subscribe_batch): a "
                             "libherald older than this binding" % _lib.path)
        if caller_position and group is not None:
            raise InvalidArgumentError("caller_position is for a local subscription: a "
                                       "group's positions are kept by the broker (give "
                                       "group= or caller_position=True, not both)")
        if (caller_position or (batch and schemas is not None)) and not _lib.has_batch_with:
            raise make_error(_lib.ERR_UNSUPPORTED,
                             "%s has no herald_agent_subscribe_batch_with (caller_position, "
                             "batch handlers with schemas): a libherald older than this "
                             "binding" % _lib.path)
        if group is not None and not _lib.has_groups:
            raise make_error(_lib.ERR_UNSUPPORTED,
                             "%s has no consumer groups (herald_agent_subscribe_group): a "
                             "libherald older than this binding" % _lib.path)
        sub = Subscription(self, name, prefixes, handler,
                           group=name if group is not None else None)
        if schemas is not None:                 # schema evolution (_schema.py)
            sub._c_handler = _schema.wrap_batch(sub, trampoline, schemas) if batch \
                else _schema.wrap(sub, trampoline)
        else:
            sub._c_handler = trampoline(sub)
        array = _c_strings(prefixes)
        #  Known before the C agent can deliver: a handler that raises on the
        #  first event is reported (on_error) with its own exception, which
        #  _report finds here.  Put back as it was if the agent refuses.
        with self._lock:
            previous = self.subscriptions.get(name)
            self.subscriptions[name] = sub
        if schemas is not None or caller_position:
            group_options = None
            if group is not None:
                group_options = _lib.GroupOptions()
                _lib.lib.herald_group_options_init(byref(group_options))
                group_options.prefixes = ctypes.cast(array, POINTER(c_char_p))
                group_options.start = _lib.Start(start_c.kind, start_c.value)
                group_options.partitions = group.partitions or 0
                group_options.session_ms = _ms(group.session)
                group_options.batch_max = group.batch_max or 0
            code = _schema.subscribe_with(self, name, array, start_c, group_options, schemas,
                                          sub._c_handler, batch=batch,
                                          caller_position=caller_position)
        elif group is None:
            subscribe = _lib.lib.herald_agent_subscribe_batch if batch \
                else _lib.lib.herald_agent_subscribe
            code = self.call(subscribe, name.encode(), array,
                             _lib.Start(start_c.kind, start_c.value), sub._c_handler, None)
        else:
            #  The library's init (its size checked against ours at load),
            #  then what was given; the C agent copies it
            options = _lib.GroupOptions()
            _lib.lib.herald_group_options_init(byref(options))
            options.prefixes = ctypes.cast(array, POINTER(c_char_p))
            options.start = _lib.Start(start_c.kind, start_c.value)
            options.partitions = group.partitions or 0
            options.session_ms = _ms(group.session)
            options.batch_max = group.batch_max or 0
            subscribe = _lib.lib.herald_agent_subscribe_group_batch if batch \
                else _lib.lib.herald_agent_subscribe_group
            code = self.call(subscribe, name.encode(), byref(options), sub._c_handler, None)
        if code != _lib.OK:
            with self._lock:
                if previous is None:
                    self.subscriptions.pop(name, None)
                else:
                    self.subscriptions[name] = previous
            raise make_error(code)
        with self._lock:
            self._keep.append(sub._c_handler)
        return sub

    def unsubscribe(self, name: str) -> None:
        check(self.call(_lib.lib.herald_agent_unsubscribe, name.encode()))

    def sub_status(self, name: str) -> SubscriptionStatus:
        raw = _lib.SubStatus()
        check(self.call(_lib.lib.herald_agent_sub_status, name.encode(), byref(raw)))
        return status_from(raw)

    def group_status(self, name: str) -> GroupStatus:
        if not _lib.has_groups:
            raise make_error(_lib.ERR_UNSUPPORTED, "this libherald has no consumer groups")
        raw = _lib.GroupStatus()
        check(self.call(_lib.lib.herald_agent_group_status, name.encode(), byref(raw)))
        return group_status_from(raw)

    def sync_trampoline(self, sub: Subscription):
        """A handler run on the agent's delivery thread: returns None -> OK,
        raises Retry -> RETRY, raises anything else -> the subscription
        fails with that exception (reported through on_error), and the
        event is not checkpointed."""
        def call(view_p, _arg) -> int:
            pin_thread()
            self.enter()
            try:
                sub.handler(Event._from_view(view_p.contents))
                return _lib.OK
            except Retry:
                return _lib.RETRY
            except BaseException as exc:        # nothing may escape into C
                sub.exception = exc
                return code_of(exc)
            finally:
                self.leave()
        return _lib.HANDLER_FN(call)

    def sync_batch_trampoline(self, sub: Subscription):
        """A batch handler run on the delivery thread: called with a list
        of Events; returns None (all done) or how many leading events it
        handled (the rest is offered again at once; 0 counts as Retry);
        raises Retry or anything else as a per-event handler does, its
        ``handled`` attribute (default 0) saying how many leading events
        were done before it: they are committed, the rest is not."""
        def call(batch_p, _arg) -> int:
            pin_thread()
            self.enter()
            batch = batch_p.contents
            try:
                batch.handled = handled_of(sub.handler(batch_events(batch)), batch.count)
                return _lib.OK
            except Retry as exc:
                batch.handled = handled_of(exc.handled, batch.count, 0)
                return _lib.RETRY
            except BaseException as exc:        # nothing may escape into C
                sub.exception = exc
                batch.handled = handled_of(getattr(exc, "handled", 0), batch.count, 0)
                return code_of(exc)
            finally:
                self.leave()
        return _lib.BATCH_HANDLER_FN(call)

    # -- reading the log -------------------------------------------------
    def _stream_call(self, handler: Optional[Callable[[Event], Any]], run) -> EventList:
        events = EventList()
        raised: List[BaseException] = []

        def call(view_p, _arg) -> int:
            try:
                event = Event._from_view(view_p.contents)
                if handler is None:
                    events.append(event)
                else:
                    handler(event)
                return _lib.OK
            except BaseException as exc:
                raised.append(exc)
                return _lib.ERR_INTERNAL
        c_call = _lib.HANDLER_FN(call)
        code = run(c_call)
        if raised:
            raise raised[0]
        if code != _lib.OK:
            raise make_error(code)
        return events

    def read(self, topic: str, from_ver: int = 1, to_ver: Optional[int] = None, *,
             handler: Optional[Callable[[Event], Any]] = None,
             timeout: Optional[float] = None) -> EventList:
        events = self._stream_call(handler, lambda c_call: self.call(
            _lib.lib.herald_agent_read, topic.encode("utf-8"), from_ver or 0, to_ver or 0,
            c_call, None, _ms(timeout)))
        events.last = events[-1].ver if events else 0
        return events

    def replay(self, *, from_seq: Optional[int] = None, from_ts=None,
               to_seq: Optional[int] = None, until_ts=None, prefixes: Prefixes = None,
               handler: Optional[Callable[[Event], Any]] = None,
               timeout: Optional[float] = None) -> EventList:
        if from_seq is not None and from_ts is not None:
            raise ValueError("replay: from_seq or from_ts, not both")
        if to_seq is not None and until_ts is not None:
            raise ValueError("replay: to_seq or until_ts, not both")
        span = _lib.Range()
        span.from_ = from_seq or 0
        span.from_ts = to_ns(from_ts) if from_ts is not None else 0
        span.to = to_seq or 0
        span.until_ts = to_ns(until_ts) if until_ts is not None else 0
        names = _prefix_list(prefixes)
        array = _c_strings(names) if names else None
        span.prefixes = ctypes.cast(array, POINTER(c_char_p)) if array is not None else None
        last = c_uint64(0)
        events = self._stream_call(handler, lambda c_call: self.call(
            _lib.lib.herald_agent_replay, byref(span), c_call, None, _ms(timeout),
            byref(last)))
        events.last = last.value
        return events

    # -- snapshots, stats ------------------------------------------------
    def snapshot_save(self, name: str, data: Union[bytes, bytearray, str], seq: int) -> None:
        payload = encode_data(data)
        check(self.call(_lib.lib.herald_agent_snapshot_save, name.encode(), int(seq),
                        c_char_p(payload), len(payload)))

    def snapshot_load(self, name: str) -> Optional[Snapshot]:
        seq, data, size = c_uint64(0), c_void_p(), c_size_t(0)
        code = self.call(_lib.lib.herald_agent_snapshot_load, name.encode(), byref(seq),
                         byref(data), byref(size))
        if code == _lib.ERR_NOT_FOUND:
            return None
        check(code)
        try:
            return Snapshot(seq=seq.value, data=ctypes.string_at(data, size.value))
        finally:
            _lib.libc.free(data)

    def stats(self) -> Stats:
        raw = _lib.Stats()
        self.call(_lib.lib.herald_agent_stats, byref(raw))
        return stats_from(raw)

    def add_stream(self, stream) -> None:
        with self._lock:
            self._streams.add(stream)

    def remove_stream(self, stream) -> None:
        with self._lock:
            self._streams.discard(stream)

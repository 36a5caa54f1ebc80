"""_schema - upcasters, downcasters and subscribe(schemas=...) (docs/schemas.md).

Internal.  The C agent does the work (include/herald.h, "Schema
evolution"): it walks the chain and applies the policy on its delivery
thread.  Here are the Python casters it calls (bytes in, bytes out at the
C boundary; ``codec="json"`` or ``"msgpack"`` decodes and encodes around a
function that takes and returns the payload), the declarations handed to
herald_agent_subscribe_with, and the parked events' readers.

A caster runs on the agent's delivery thread, also for an AsyncAgent: it
must be a pure function of its input.  Whatever it raises (or a result
that is not bytes) fails that conversion, and the subscription's policy
applies: stop, skip (on_error told) or park.
"""

from __future__ import annotations

import ctypes
import json
import threading
from ctypes import POINTER, byref, c_char_p, c_size_t, c_void_p
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from . import _lib
from .errors import make_error
from .event import Event

POLICIES = {"stop": _lib.SCHEMA_STOP, "skip": _lib.SCHEMA_SKIP, "park": _lib.SCHEMA_PARK}
CODECS = (None, "bytes", "json", "msgpack")


class SchemaStats(NamedTuple):
    """Conversions and incompatible events (herald_agent_schema_stats)."""
    upcast: int
    downcast: int
    skipped: int
    parked: int
    stopped: int


class Parked(NamedTuple):
    """A parked event, as stored (not converted), and why it was parked."""
    event: Event
    reason: str


class SchemaSpec:
    """What a subscription understands: ``schemas`` maps a type to the
    schema its handler wants; ``default`` is the schema of every other type
    (None: as stored); ``policy`` one of POLICIES; ``on_parked(event,
    reason)`` is called for each parked event."""

    def __init__(self, schemas: Optional[Mapping[str, int]], default: Optional[int],
                 on_incompatible: str, on_parked: Optional[Callable[[Event, str], Any]]):
        self.schemas: Dict[str, int] = {}
        for type_, schema in (schemas or {}).items():
            if not isinstance(type_, str) or not type_:
                raise TypeError("schemas: keys are event types (non-empty str), not %r"
                                % (type_,))
            if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
                raise ValueError("schemas[%r]: an int >= 1, not %r" % (type_, schema))
            self.schemas[type_] = schema
        if default is not None and (isinstance(default, bool) or not isinstance(default, int)
                                    or default < 1):
            raise ValueError("default_schema: an int >= 1 or None, not %r" % (default,))
        if on_incompatible not in POLICIES:
            raise ValueError("on_incompatible: 'stop', 'skip' or 'park', not %r"
                             % (on_incompatible,))
        if on_parked is not None and not callable(on_parked):
            raise TypeError("on_parked: a callable(event, reason)")
        self.default = default
        self.policy = on_incompatible
        self.on_parked = on_parked


def schema_spec(schemas, default_schema, on_incompatible, on_parked) -> Optional[SchemaSpec]:
    """The SchemaSpec of subscribe's keywords, or None when none was given."""
    if schemas is None and default_schema is None and on_incompatible == "stop" \
            and on_parked is None:
        return None
    if not _lib.has_schemas:
        raise make_error(_lib.ERR_UNSUPPORTED, "%s has no schema evolution "
                         "(herald_agent_subscribe_with): a libherald older than this "
                         "binding" % _lib.path)
    return SchemaSpec(schemas, default_schema, on_incompatible, on_parked)


def _codec(codec: Optional[str]):
    """(decode, encode) for codec."""
    if codec not in CODECS:
        raise ValueError("codec: None, 'bytes', 'json' or 'msgpack', not %r" % (codec,))
    if codec == "json":
        return (lambda data: json.loads(data.decode("utf-8")),
                lambda value: json.dumps(value, separators=(",", ":")).encode("utf-8"))
    if codec == "msgpack":
        import msgpack                          # the optional extra
        return (lambda data: msgpack.unpackb(data, raw=False),
                lambda value: msgpack.packb(value, use_bin_type=True))
    return (lambda data: data, lambda value: value)


def check_codec(codec: Optional[str]) -> None:
    """ValueError for an unknown codec (when the decorator is made)."""
    _codec(codec)


def make_caster(function: Callable[[Any], Any], codec: Optional[str]):
    """A ctypes CASTER_FN running function on the data: its result goes to
    the agent's buffer, or to malloc'd bytes when larger; an exception (or
    a result that is not bytes) is a failed conversion, its text in the
    message."""
    decode, encode = _codec(codec)

    def call(view_p, result_p, _arg) -> int:
        result = result_p.contents
        try:
            view = view_p.contents
            data = ctypes.string_at(view.data, view.data_len) if view.data_len else b""
            out = encode(function(decode(data)))
            if isinstance(out, str):
                out = out.encode("utf-8")
            if not isinstance(out, (bytes, bytearray, memoryview)):
                raise TypeError("a caster returns bytes (or, with a codec, the payload), "
                                "not %s" % type(out).__name__)
            out = bytes(out)
            if len(out) <= result.capacity:
                ctypes.memmove(result.buffer, out, len(out))
            else:
                target = _lib.libc.malloc(len(out))
                if not target:
                    raise MemoryError("out of memory")
                ctypes.memmove(target, out, len(out))
                result.data = target
            result.data_len = len(out)
            return _lib.OK
        except BaseException as exc:            # nothing may escape into C
            text = ("%s: %s" % (type(exc).__name__, exc)).encode("utf-8", "replace")
            result.message = text[:255]
            return _lib.ERR_INVALID
    return _lib.CASTER_FN(call)


def register(core, type_: str, from_schema: int, function: Callable[[Any], Any],
             codec: Optional[str], down: bool) -> None:
    if not _lib.has_schemas:
        raise make_error(_lib.ERR_UNSUPPORTED, "%s has no schema evolution: a libherald "
                         "older than this binding" % _lib.path)
    if not isinstance(type_, str) or isinstance(from_schema, bool) \
            or not isinstance(from_schema, int):
        raise TypeError("a caster needs a type (str) and a from_schema (int)")
    if not callable(function):
        raise TypeError("a caster is a callable(data) -> data")
    c_fn = make_caster(function, codec)
    c_register = _lib.lib.herald_agent_downcaster if down else _lib.lib.herald_agent_upcaster
    code = core.call(c_register, type_.encode("utf-8"), from_schema, c_fn, None)
    if code != _lib.OK:
        raise make_error(code)
    with core._lock:
        core._keep.append(c_fn)                 # casters live as long as the agent


# Each delivery's stored schema, from the outer callback to the handler's
# wrapper (one thread runs both)
_current = threading.local()


def wrap(sub, trampoline):
    """trampoline for a subscription with schemas: the Event gets
    ``stored_schema`` (read from the envelope, which stays as stored)."""
    handler = sub.handler

    def with_stored(event: Event) -> Any:
        event.stored_schema = getattr(_current, "stored", event.schema)
        return handler(event)
    sub.handler = with_stored
    inner = trampoline(sub)

    def call(view_p, arg) -> int:
        _current.stored = _lib.lib.herald_delivery_stored_schema(view_p)
        return inner(view_p, arg)
    sub._schema_inner = inner                   # kept alive with the outer one
    return _lib.HANDLER_FN(call)


def wrap_batch(sub, trampoline, spec: SchemaSpec):
    """trampoline for a batch subscription with schemas: the C agent
    converted each event of the batch (the views' data and schema), while
    the envelopes the Events are decoded from are as stored; each Event
    gets the converted ``schema`` and ``data``, and ``stored_schema``.
    Only an event with a type the spec converts can differ: the others are
    not looked at again."""
    handler = sub.handler
    from . import event as _event
    wanted = spec.schemas
    every_type = bool(spec.default)

    def with_converted(events):
        views = _current.batch.events
        from_envelopes = _event._msgpack is not None      # else from the views
        for index, event in enumerate(events):
            type_ = event.type
            if type_ is None or not (every_type or type_ in wanted):
                continue                                  # as stored
            view = views[index]
            if from_envelopes:
                if view.schema != event.schema:           # converted (never otherwise)
                    event.stored_schema = event.schema
                    event.schema = view.schema
                    event.data = ctypes.string_at(view.data, view.data_len) \
                        if view.data_len else b""
            else:
                event.stored_schema = _lib.lib.herald_delivery_stored_schema(
                    ctypes.byref(view))
        return handler(events)
    sub.handler = with_converted
    inner = trampoline(sub)

    def call(batch_p, arg) -> int:
        _current.batch = batch_p.contents
        return inner(batch_p, arg)
    sub._schema_inner = inner
    return _lib.BATCH_HANDLER_FN(call)


def subscribe_with(core, name: str, array, start_c, group_options,
                   spec: Optional[SchemaSpec], c_handler, batch: bool = False,
                   caller_position: bool = False) -> int:
    """herald_agent_subscribe_with (herald_agent_subscribe_batch_with when
    batch) for a local (group_options None) or a group subscription, with
    the declarations of spec (None: none) and caller_position.  Returns
    the C code."""
    options = _lib.SubscribeOptions()
    _lib.lib.herald_subscribe_options_init(byref(options))
    options.prefixes = ctypes.cast(array, POINTER(c_char_p))
    options.start = _lib.Start(start_c.kind, start_c.value)
    options.caller_position = caller_position
    if group_options is not None:
        options.group = ctypes.pointer(group_options)
    subscribe = _lib.lib.herald_agent_subscribe_batch_with if batch \
        else _lib.lib.herald_agent_subscribe_with
    if spec is None:
        return core.call(subscribe, name.encode(), byref(options), c_handler, None)
    wants = (_lib.SchemaWant * max(1, len(spec.schemas)))()
    for index, (type_, schema) in enumerate(spec.schemas.items()):
        wants[index].type = type_.encode("utf-8")
        wants[index].schema = schema
    options.wants = ctypes.cast(wants, POINTER(_lib.SchemaWant))
    options.want_count = len(spec.schemas)
    options.default_schema = spec.default or 0
    options.on_incompatible = POLICIES[spec.policy]
    if spec.on_parked is not None:
        user = spec.on_parked

        def parked(view_p, reason, _arg) -> None:
            try:
                user(Event._from_view(view_p.contents),
                     (reason or b"").decode("utf-8", "replace"))
            except BaseException:               # nothing may escape into C
                import logging
                logging.getLogger("herald").exception("herald: on_parked raised")
        c_parked = _lib.PARKED_FN(parked)
        options.on_parked = c_parked
        with core._lock:
            core._keep.append(c_parked)
    return core.call(subscribe, name.encode(), byref(options), c_handler, None)


def parked(core, name: str) -> List[Parked]:
    """The parked events of subscription name, oldest first."""
    found: List[Parked] = []

    def each(view_p, reason, _arg) -> None:
        found.append(Parked(Event._from_view(view_p.contents),
                            (reason or b"").decode("utf-8", "replace")))
    c_each = _lib.PARKED_FN(each)
    code = core.call(_lib.lib.herald_agent_parked, name.encode(), c_each, None)
    if code != _lib.OK:
        raise make_error(code)
    return found


def replay_parked(core, name: str, handler: Callable[[Event], Any]) -> int:
    """Hand name's parked events, converted with today's casters, to
    handler on this thread; the handled ones leave the file.  Returns how
    many were handled; raises the first failure (what follows stays)."""
    raised: List[BaseException] = []
    count = [0]

    def call(view_p, _arg) -> int:
        try:
            event = Event._from_view(view_p.contents)
            event.stored_schema = _lib.lib.herald_delivery_stored_schema(view_p)
            handler(event)
            count[0] += 1
            return _lib.OK
        except BaseException as exc:
            raised.append(exc)
            return _lib.ERR_INTERNAL
    c_call = _lib.HANDLER_FN(call)
    code = core.call(_lib.lib.herald_agent_parked_replay, name.encode(), c_call, None)
    if raised:
        raise raised[0]
    if code != _lib.OK:
        raise make_error(code)
    return count[0]


def schema_stats(core, name: Optional[str]) -> SchemaStats:
    raw = _lib.SchemaStats()
    code = core.call(_lib.lib.herald_agent_schema_stats,
                     name.encode() if name is not None else None, byref(raw))
    if code != _lib.OK:
        raise make_error(code)
    return SchemaStats(raw.upcast, raw.downcast, raw.skipped, raw.parked, raw.stopped)

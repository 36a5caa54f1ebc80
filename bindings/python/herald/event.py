"""herald.event - the values the agent hands to Python.

An :class:`Event` is a copy made from the C agent's borrowed view during
the handler call, so it stays valid after the handler returns.
"""

from __future__ import annotations

import ctypes
import datetime
import json as _json
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

from . import _lib

try:                                    # optional: batches decode in bulk with it
    import msgpack as _msgpack
except ImportError:                     # pragma: no cover
    _msgpack = None

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _text(pointer: Optional[int], length: int) -> str:
    if not pointer:
        return ""
    return ctypes.string_at(pointer, length).decode("utf-8", "replace")


class Event:
    """One stored event, as delivered to a handler or read from the log.

    ``id`` is the event's id (the idempotency key, a ``uuid.UUID``),
    ``seq`` its place in the whole log, ``ver`` its version in its topic,
    ``ts`` the broker's ingest time in Unix nanoseconds (``time`` is the
    same as an aware ``datetime`` in UTC).  ``type``, ``schema`` and
    ``meta`` are as published; ``data`` is the payload (opaque bytes:
    ``json()``, ``unpack()`` and ``text()`` decode it).  For a subscription
    with ``schemas=`` (docs/schemas.md), ``schema`` and ``data`` are the
    converted ones and ``stored_schema`` the one in the log (otherwise the
    two schemas are equal).  ``subscription``
    names the subscription delivering it (None from read/replay);
    ``redelivered`` is True for the one event a subscription was handling
    when its process died (in a consumer group: each event of the batch a
    member died in, given to the next owner): check your own effects by
    ``id`` before applying it again; ``attempt`` counts deliveries after
    :class:`herald.Retry`.

    Events are values: compare equal field by field, hashable by ``id``,
    and not meant to be modified.
    """

    __slots__ = ("_id", "_uuid", "topic", "seq", "ver", "ts", "type", "schema", "meta",
                 "data", "subscription", "redelivered", "attempt", "stored_schema")

    topic: str
    seq: int
    ver: int
    ts: int
    type: Optional[str]
    schema: int
    meta: Dict[str, str]
    data: bytes
    subscription: Optional[str]
    redelivered: bool
    attempt: int

    def __init__(self, id: Union[uuid.UUID, bytes], topic: str, seq: int, ver: int, ts: int,
                 type: Optional[str] = None, schema: int = 1,
                 meta: Optional[Dict[str, str]] = None, data: bytes = b"",
                 subscription: Optional[str] = None, redelivered: bool = False,
                 attempt: int = 1):
        if isinstance(id, uuid.UUID):
            self._id, self._uuid = id.bytes, id
        else:
            self._id, self._uuid = bytes(id), None
        self.topic, self.seq, self.ver, self.ts = topic, seq, ver, ts
        self.type, self.schema, self.meta, self.data = type, schema, meta or {}, data
        self.subscription, self.redelivered, self.attempt = subscription, redelivered, attempt
        self.stored_schema = schema             # as in the log (docs/schemas.md)

    @property
    def id(self) -> uuid.UUID:
        """The event's id (made on first use: most handlers never look)."""
        if self._uuid is None:
            self._uuid = uuid.UUID(bytes=self._id)
        return self._uuid

    @property
    def time(self) -> datetime.datetime:
        """``ts`` as an aware datetime (UTC, microsecond precision)."""
        return _EPOCH + datetime.timedelta(microseconds=self.ts // 1000)

    def json(self) -> Any:
        """``data`` decoded as JSON (UTF-8)."""
        return _json.loads(self.data)

    def unpack(self) -> Any:
        """``data`` decoded as MessagePack (needs the ``msgpack`` package:
        Debian's python3-msgpack)."""
        import msgpack
        return msgpack.unpackb(self.data, raw=False)

    def text(self) -> str:
        """``data`` as UTF-8 text."""
        return self.data.decode("utf-8")

    def _key(self) -> tuple:
        return (self._id, self.topic, self.seq, self.ver, self.ts, self.type, self.schema,
                self.meta, self.data, self.subscription, self.redelivered, self.attempt)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return ("Event(id=%r, topic=%r, seq=%d, ver=%d, ts=%d, type=%r, schema=%d, meta=%r, "
                "data=%r, subscription=%r, redelivered=%r, attempt=%d)"
                % (self.id, self.topic, self.seq, self.ver, self.ts, self.type, self.schema,
                   self.meta, self.data[:64], self.subscription, self.redelivered,
                   self.attempt))

    @classmethod
    def _from_view(cls, view: "_lib.Delivery") -> "Event":
        event = cls.__new__(cls)
        string_at = ctypes.string_at
        event._id = string_at(view.id, 16)
        event._uuid = None
        event.topic = string_at(view.topic, view.topic_len).decode("utf-8", "replace")
        event.seq, event.ver, event.ts = view.seq, view.ver, view.ts
        type_p = view.type
        event.type = string_at(type_p, view.type_len).decode("utf-8", "replace") \
            if type_p else None
        event.schema = event.stored_schema = view.schema
        count = view.meta_count
        if count:
            meta = {}
            for index in range(count):
                kv = view.meta[index]
                meta[_text(kv.key, kv.key_len)] = _text(kv.value, kv.value_len)
            event.meta = meta
        else:
            event.meta = {}
        size = view.data_len
        event.data = string_at(view.data, size) if size else b""
        subscription = view.subscription
        event.subscription = subscription.decode() if subscription else None
        event.redelivered = view.redelivered
        event.attempt = view.attempt
        return event


@dataclass(frozen=True)
class Published:
    """Where a published event is stored: ``seq`` in the log, ``ver`` in its
    topic; ``duplicate`` when its id had been stored before (a retry: it
    was not stored again)."""

    seq: int
    ver: int
    duplicate: bool
    id: uuid.UUID


@dataclass(frozen=True)
class Snapshot:
    """A saved snapshot: the service's bytes and the ``seq`` they reflect."""

    seq: int
    data: bytes


@dataclass(frozen=True)
class SubscriptionStatus:
    """A subscription's state: ``state`` is ``"catching_up"``, ``"live"``,
    ``"failed"`` or ``"stopped"``; ``delivered_seq`` its checkpoint (last
    seq done); counters since it was subscribed; ``error`` (a herald_err
    code) and ``message`` once failed; ``gaps`` (repairs: from live back to
    live by replay), ``repair_replays`` (REPLAY requests they took) and
    ``live_wait`` (seconds from the last catch-up replay's end to live);
    ``data_lost`` (times its checkpoint was rewound because the broker lost
    events it had passed: :class:`herald.DataLostError`) and ``lineage``
    (the broker lineage its checkpoint is on)."""

    state: str
    delivered_seq: int
    delivered: int
    duplicates: int
    retries: int
    error: int
    message: str
    gaps: int = 0
    repair_replays: int = 0
    live_wait: float = 0.0
    data_lost: int = 0
    lineage: int = 0


@dataclass(frozen=True)
class GroupStatus:
    """This member's figures in a consumer group (herald_group_status_t;
    docs/groups.md): ``member`` (its name in the group), the group's
    ``generation`` as last heard and its ``partitions`` (0 until joined);
    ``owned``, the partitions this member holds now; ``committed``, the
    lowest committed seq of those, and ``lag``, the broker's head minus it
    (0 when it holds none); ``commits`` the broker acknowledged;
    ``redelivered``, events handed to the handler flagged redelivered;
    ``rebalances``, assignments that changed what it holds; ``fenced``,
    partitions taken away by a commit found fenced; ``joined``: the broker
    answered a heartbeat and the lease is valid now."""

    member: str
    generation: int
    partitions: int
    owned: int
    committed: int
    lag: int
    commits: int
    redelivered: int
    rebalances: int
    fenced: int
    joined: bool


_STATES = {1: "catching_up", 2: "live", 3: "failed", 4: "stopped"}


@dataclass(frozen=True)
class Stats:
    """The agent's counters (docs/agent.md, "Stats and status")."""

    delivered: int
    duplicates: int
    gaps_repaired: int
    replays: int
    live_overflows: int
    retries: int
    published: int
    publish_errors: int
    outbox_depth: int
    outbox_bytes: int
    broker_head: int
    broker_epoch: int
    lag: int
    broker_reachable: bool
    state_recovered: int
    replay_errors: int = 0
    repair_replays: int = 0
    gaps: int = 0
    data_lost: int = 0
    broker_lineage: int = 0
    # The node the agent talks to (publishes, replays and the live stream):
    # its name and api endpoint; moves to another node, and of those the
    # ones to a leader that a not_leader named; api endpoints known
    node: str = ""
    node_api: str = ""
    failovers: int = 0
    leader_redirects: int = 0
    nodes_known: int = 0
    # CURVE handshakes the broker refused (an unknown, revoked or expired
    # key); the agent retries each by itself, 1 s doubling to 30 s
    auth_refused: int = 0

    def __getitem__(self, name: str) -> Any:
        """``stats()["auth_refused"]``: the counters by name, too."""
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None


def _batch_events(batch: "_lib.DeliveryBatch") -> List["Event"]:
    """The Events of a herald_delivery_batch_t: its envelopes read in one
    string_at and decoded in bulk with msgpack when it is installed (one
    ctypes read per field and event otherwise)."""
    count = batch.count
    subscription = batch.subscription
    name = subscription.decode() if subscription else None
    flags = ctypes.string_at(batch.redelivered, count)
    attempt = batch.attempt
    if _msgpack is None:
        views = batch.events
        return [Event._from_view(views[index]) for index in range(count)]
    unpacker = _msgpack.Unpacker(raw=False, unicode_errors="replace", max_buffer_size=max(batch.envelopes_len, 1024))
    unpacker.feed(ctypes.string_at(batch.envelopes, batch.envelopes_len))
    new = Event.__new__
    events = []
    append = events.append
    index = 0
    for fields in unpacker:
        event = new(Event)
        event._id = fields["id"]
        event._uuid = None
        event.topic = fields["topic"]
        event.seq = fields["seq"]
        event.ver = fields["ver"]
        event.ts = fields["ts"]
        event.type = fields.get("type")
        event.schema = event.stored_schema = fields.get("schema", 1)
        event.meta = fields.get("meta") or {}
        event.data = fields["data"]
        event.subscription = name
        event.redelivered = flags[index] != 0
        event.attempt = attempt
        append(event)
        index += 1
    return events


class EventList(list):
    """The events of a read or replay, in order; ``last`` is the END's
    ``last`` (replay: every matching event up to this seq was passed, so
    continue from ``last + 1``; read: the last version passed)."""

    last: int = 0


# -- where a new subscription starts ---------------------------------------

@dataclass(frozen=True)
class Start:
    """Where a NEW subscription starts (an existing one resumes after its
    checkpoint and ignores it): :data:`BEGINNING`, :data:`NOW`,
    ``Start.at_seq(n)`` or ``Start.at_time(datetime or ns)``.  Plain values
    are accepted too: ``"beginning"``, ``"now"``, an ``int`` seq, a
    ``datetime``."""

    kind: int
    value: int = 0

    @classmethod
    def at_seq(cls, seq: int) -> "Start":
        return cls(_lib.START_SEQ, int(seq))

    @classmethod
    def at_time(cls, when: Union[datetime.datetime, int]) -> "Start":
        return cls(_lib.START_TS, to_ns(when))


BEGINNING = Start(_lib.START_BEGINNING)
NOW = Start(_lib.START_NOW)

StartLike = Union[Start, str, int, datetime.datetime]


def to_ns(when: Union[datetime.datetime, int, float]) -> int:
    """Unix nanoseconds from a datetime (naive means UTC) or a number of ns."""
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        delta = when - _EPOCH
        return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    return int(when)


def to_start(start: StartLike) -> Start:
    if isinstance(start, Start):
        return start
    if isinstance(start, str):
        if start.lower() == "beginning":
            return BEGINNING
        if start.lower() == "now":
            return NOW
        raise ValueError("start: 'beginning', 'now', a seq, a datetime or a Start")
    if isinstance(start, datetime.datetime):
        return Start.at_time(start)
    if isinstance(start, int) and not isinstance(start, bool) and start >= 1:
        return Start.at_seq(start)
    raise ValueError("start: 'beginning', 'now', a seq (>= 1), a datetime or a Start")


def status_from(raw: "_lib.SubStatus") -> SubscriptionStatus:
    return SubscriptionStatus(
        state=_STATES.get(raw.state, "unknown"), delivered_seq=raw.delivered_seq,
        delivered=raw.delivered, duplicates=raw.duplicates, retries=raw.retries,
        error=raw.error, message=raw.message.decode("utf-8", "replace"), gaps=raw.gaps,
        repair_replays=raw.repair_replays, live_wait=raw.live_wait_ms / 1000.0,
        data_lost=raw.data_lost, lineage=raw.lineage)


def group_status_from(raw: "_lib.GroupStatus") -> GroupStatus:
    values = {name: getattr(raw, name) for name, _ in raw._fields_}
    values["member"] = values["member"].decode("utf-8", "replace")
    values["joined"] = bool(values["joined"])
    return GroupStatus(**values)


def stats_from(raw: "_lib.Stats") -> Stats:
    values = {name: getattr(raw, name) for name, _ in raw._fields_}
    for name in ("node", "node_api"):
        values[name] = values[name].decode("utf-8", "replace")
    return Stats(**values)


def published_from(result: "_lib.PublishResult") -> Published:
    return Published(seq=result.seq, ver=result.ver, duplicate=bool(result.dup),
                     id=uuid.UUID(bytes=bytes(result.id)))

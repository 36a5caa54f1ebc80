"""The Herald agent for Python, over libherald.

Herald is an event-sourcing message bus: a broker (``heraldd``) keeps an
ordered, durable log of events and fans it out; the agent embedded in a
service subscribes by topic prefix and gets every matching event exactly
once, in order, across its own restarts, and publishes through a durable
outbox.  This package is the C agent (``libherald``) in Python: no second
implementation of the protocol.

- :class:`Agent`: handlers on the agent's delivery thread; ``publish``
  blocks (the GIL released), ``publish_async`` returns a
  ``concurrent.futures.Future``; ``events()`` iterates a subscription.
- :class:`AsyncAgent`: the same for asyncio, driven by a file descriptor
  the C agent exposes (no thread blocked per subscription); ``async def``
  handlers, ``await agent.publish(...)``, ``async for ... in aevents()``.
- :class:`Event`, :class:`Published`, :class:`Snapshot`, :class:`Stats`,
  :class:`SubscriptionStatus`, :class:`GroupStatus`: the values;
  :data:`BEGINNING`, :data:`NOW`, :class:`Start`: where a new subscription
  starts.
- Consumer groups: ``subscribe(..., group="billing")`` shares the work
  among the agents of one group, positions kept by the broker (so
  ``state_dir=None`` works); ``group_status()`` has a member's figures.
- Projections (docs/projections.md): :class:`SQLiteProjection` and
  :class:`PostgresProjection` build a read model whose position is
  committed with its effects, one transaction per batch (exactly once
  across kill -9), live or as of a time (``until_ts``).
- Exceptions: one class per ``herald_err`` (:mod:`herald.errors`), all
  :class:`HeraldError`; :class:`Retry` to have an event offered again.

docs/python.md is the five-minute tour; docs/agent.md the contract.
"""

from . import _lib
from .agent import Agent, EventStream, PublishFuture
from .aio import AsyncAgent, AsyncEventStream, AsyncPublishFuture
from ._core import Subscription
from ._log import LOG_ERROR, LOG_WARNING, set_log
from ._schema import Parked, SchemaStats
from .errors import (BadRequestError, BrokerUnavailable, ConflictError, CorruptStateError,
                     DataLostError, ForkedAgentError, IdReusedError,
                     HeraldError, HeraldIOError, InternalError, InvalidArgumentError,
                     LockedError, NotAStoreError, NotFoundError, NotLeaderError,
                     OutOfMemoryError, OverloadedError, Retry, TimeoutError, TooLargeError,
                     TrimmedError,
                     Unauthorized, UnauthorizedError, UnknownCommandError, UnsupportedError,
                     error_class)
from .projection import (ApplyError, PostgresProjection, ProjectionStatus,
                         SQLiteProjection)
from .event import (BEGINNING, NOW, Event, EventList, GroupStatus, Published, Snapshot,
                    Start, Stats, SubscriptionStatus)

__version__ = "0.1.0"

#: The version of the libherald loaded ("MAJOR.MINOR.PATCH") and its path.
library_version: str = _lib.lib.herald_version().decode()
library_path: str = _lib.path

__all__ = [
    "Agent", "AsyncAgent", "EventStream", "AsyncEventStream", "Subscription",
    "PublishFuture", "AsyncPublishFuture",
    "Event", "EventList", "Published", "Snapshot", "Stats", "SubscriptionStatus",
    "GroupStatus", "Parked", "SchemaStats",
    "SQLiteProjection", "PostgresProjection", "ProjectionStatus", "ApplyError",
    "Start", "BEGINNING", "NOW", "Retry",
    "HeraldError", "BadRequestError", "TooLargeError", "ConflictError", "NotLeaderError",
    "UnauthorizedError", "Unauthorized", "OverloadedError", "UnknownCommandError", "UnsupportedError",
    "InternalError", "HeraldIOError", "LockedError", "NotAStoreError", "CorruptStateError",
    "NotFoundError", "OutOfMemoryError", "TimeoutError", "BrokerUnavailable",
    "InvalidArgumentError", "DataLostError", "IdReusedError", "TrimmedError", "ForkedAgentError", "error_class", "library_version", "library_path",
    "set_log", "LOG_ERROR", "LOG_WARNING",
]

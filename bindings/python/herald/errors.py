"""herald.errors - one exception class per ``herald_err``.

Every failure of the C agent is a ``herald_err`` code (include/herald.h);
each code raises its own class, all of them subclasses of
:class:`HeraldError`.  The first block mirrors the protocol's ERROR codes
(the broker refused something), the second the agent's local conditions.
Where a built-in exception means the same thing, the class derives from it
too (``herald.TimeoutError`` is a built-in ``TimeoutError``,
``InvalidArgumentError`` a ``ValueError``), so generic handlers catch them.
"""

from __future__ import annotations

import builtins
import re
from typing import Dict, Optional, Type
import uuid

from . import _lib


class HeraldError(Exception):
    """A failed Herald call.  ``code`` is the ``herald_err`` value, ``name``
    its protocol code string (``"conflict"``) or local name, ``message``
    the agent's explanation."""

    code: int = -100
    name: str = "error"

    def __init__(self, message: str = "", *, code: Optional[int] = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message or self.name


# -- the protocol's codes: the broker refused ------------------------------

class BadRequestError(HeraldError, ValueError):
    """``bad_request``: the broker found a field invalid."""
    code, name = _lib.ERR_BAD_REQUEST, "bad_request"


class TooLargeError(HeraldError, ValueError):
    """``too_large``: an event over ``max_event_bytes``, or a batch too long."""
    code, name = _lib.ERR_TOO_LARGE, "too_large"


class ConflictError(HeraldError):
    """``conflict``: ``expect`` failed.  ``expected`` is the version the
    publisher required, ``actual`` the topic's version now; ``id`` the
    event's id (it was not stored)."""
    code, name = _lib.ERR_CONFLICT, "conflict"

    def __init__(self, message: str = "", *, expected: int = 0, actual: int = 0,
                 topic: Optional[str] = None, id: Optional[uuid.UUID] = None):
        super().__init__(message)
        self.expected = expected
        self.actual = actual
        self.topic = topic
        self.id = id


class NotLeaderError(HeraldError):
    """``not_leader``: the broker is a follower of a cluster (the agent
    retries these itself; seen only from calls that do not retry)."""
    code, name = _lib.ERR_NOT_LEADER, "not_leader"


class UnauthorizedError(HeraldError, PermissionError):
    """``unauthorized``."""
    code, name = _lib.ERR_UNAUTHORIZED, "unauthorized"


#: The name docs/security.md uses: a request outside the key's grants (a
#: publish to a topic it may not publish, a replay or read outside its read
#: set) or a key the broker no longer admits.
Unauthorized = UnauthorizedError


class OverloadedError(HeraldError):
    """``overloaded``: the broker, or the local outbox, stayed full for the
    timeout; nothing was queued."""
    code, name = _lib.ERR_OVERLOADED, "overloaded"


class UnknownCommandError(HeraldError):
    """``unknown_command``."""
    code, name = _lib.ERR_UNKNOWN_COMMAND, "unknown_command"


class UnsupportedError(HeraldError):
    """``unsupported``: the broker does not speak this version."""
    code, name = _lib.ERR_UNSUPPORTED, "unsupported"


class InternalError(HeraldError):
    """``internal``: the broker failed (also the code a subscription fails
    with when its Python handler raised)."""
    code, name = _lib.ERR_INTERNAL, "internal"


class TrimmedError(HeraldError):
    """``trimmed``: the events asked for were trimmed from the broker's live
    log (``herald trim``, a retention policy).  A read or replay that starts
    before the trim point raises it; a subscription whose catch-up needs a
    trimmed event stops with it (nothing skipped).  ``first`` is the first
    seq (a read: version) still in the live log, when the message names it:
    go on from there, or read the rest from the archive
    (``herald replay --archive DIR``)."""
    code, name = _lib.ERR_TRIMMED, "trimmed"

    #: how the agent's messages name the first seq (or version) still there
    _FIRST = re.compile(r"\(first (\d+)[:)]|first (?:seq|ver|version) still there[^0-9]* is (\d+)")

    def __init__(self, message: str = "", *, first: Optional[int] = None):
        super().__init__(message)
        if first is None:
            found = self._FIRST.search(message or "")
            if found:
                first = int(found.group(1) or found.group(2))
        self.first = first


# -- local conditions ------------------------------------------------------

class HeraldIOError(HeraldError, OSError):
    """The operating system failed (state directory, sockets)."""
    code, name = _lib.ERR_IO, "io"


class LockedError(HeraldError):
    """Another agent (in this or another process) holds the state directory."""
    code, name = _lib.ERR_LOCKED, "locked"


class NotAStoreError(HeraldError):
    """A directory holds something that is not Herald's."""
    code, name = _lib.ERR_NOT_A_STORE, "not_a_store"


class CorruptStateError(HeraldError):
    """Local state (a checkpoint, the outbox, a snapshot) failed its check."""
    code, name = _lib.ERR_CORRUPT, "corrupt"


class NotFoundError(HeraldError, LookupError):
    """No such subscription, snapshot, topic or stream."""
    code, name = _lib.ERR_NOT_FOUND, "not_found"


class OutOfMemoryError(HeraldError, MemoryError):
    """An allocation failed in the agent."""
    code, name = _lib.ERR_NOMEM, "nomem"


class TimeoutError(HeraldError, builtins.TimeoutError):
    """No answer in time.  From ``publish``: the event is QUEUED in the
    outbox, not lost, and will be sent with the same ``id`` (do not publish
    it again under a new id)."""
    code, name = _lib.ERR_TIMEOUT, "timeout"

    def __init__(self, message: str = "", *, id: Optional[uuid.UUID] = None):
        super().__init__(message)
        self.id = id


class BrokerUnavailable(HeraldError, ConnectionError):
    """The broker cannot be reached."""
    code, name = _lib.ERR_UNAVAILABLE, "unavailable"


class InvalidArgumentError(HeraldError, ValueError):
    """The agent refused the arguments locally (a bad topic, name, size...);
    nothing was sent or queued."""
    code, name = _lib.ERR_INVALID, "invalid"


class DataLostError(HeraldError):
    """The broker lost events it had stored (a damaged store whose loss an
    operator accepted).  Events after ``lost_after`` may be gone; the agent
    has rewound to it so that nothing published since is skipped."""
    code, name = _lib.ERR_DATA_LOST, "data_lost"


class IdReusedError(HeraldError):
    """An event id was already stored with a different topic or data: the
    new event was NOT stored (a true retry is a plain duplicate).  ``id`` is
    the id, ``seq`` where the event first stored under it is; final: the
    agent does not send it again."""
    code, name = _lib.ERR_ID_REUSED, "id_reused"

    def __init__(self, message: str = "", *, id: Optional[uuid.UUID] = None, seq: int = 0,
                 topic: Optional[str] = None):
        super().__init__(message)
        self.id = id
        self.seq = seq
        self.topic = topic


class ForkedAgentError(HeraldError):
    """An agent used in a process forked from the one that made it.  The C
    agent's threads and sockets do not cross ``fork``: the child must make
    its own agent (with its own ``state_dir``).  The parent's agent is not
    affected.  Raised for every call on the inherited agent in the child;
    ``close()`` there only lets go of it."""
    code, name = _lib.ERR_INVALID, "forked"


class Retry(Exception):
    """Raise from a handler to have the same event offered again after a
    backoff (10 ms doubling up to ``retry_max``).  The subscription waits,
    so order is kept.

    From a batch handler (``subscribe(..., batch=True)``), ``handled``
    says how many leading events of the list were done: they are
    committed, and the rest is offered again after the backoff."""

    def __init__(self, *args: object, handled: int = 0):
        super().__init__(*args)
        self.handled = handled


_BY_CODE: Dict[int, Type[HeraldError]] = {
    cls.code: cls for cls in (
        BadRequestError, TooLargeError, ConflictError, NotLeaderError, UnauthorizedError,
        OverloadedError, UnknownCommandError, UnsupportedError, InternalError, TrimmedError,
        HeraldIOError, LockedError, NotAStoreError, CorruptStateError, NotFoundError,
        OutOfMemoryError, TimeoutError, BrokerUnavailable, InvalidArgumentError,
        DataLostError, IdReusedError)
}


def error_class(code: int) -> Type[HeraldError]:
    """The exception class for a ``herald_err`` code."""
    return _BY_CODE.get(code, HeraldError)


def make_error(code: int, message: Optional[str] = None) -> HeraldError:
    """An exception for code, with message (the thread's last error when None)."""
    if message is None:
        last_code, last_message = _lib.last_error()
        message = last_message if last_code == code else ""
    if not message:
        text = _lib.lib.herald_strerror(code)
        message = text.decode() if text else "error %d" % code
    cls = error_class(code)
    if cls is HeraldError:
        return HeraldError(message, code=code)
    return cls(message)


def check(code: int) -> None:
    """Raise the exception for a C call's return value, if not HERALD_OK."""
    if code != _lib.OK:
        raise make_error(code)


def code_of(exc: BaseException) -> int:
    """The ``herald_err`` a handler's exception stands for."""
    if isinstance(exc, HeraldError) and exc.code > 0:
        return exc.code
    return _lib.ERR_INTERNAL

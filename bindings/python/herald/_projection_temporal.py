"""_projection_temporal - a temporal projection's run (herald.projection).

Internal.  A projection with ``until_ts`` replays the log from its position
+ 1 up to that instant (inclusive, the broker's ingest ts) on the thread
that calls ``start``, commits the events in transactions of ``batch_max``
with its position (Projection._project: the same rules as a live batch),
and stops: DONE.  Events are converted to the declared schemas here, as a
subscription with ``schemas=`` would (herald_agent_convert), since a
replay hands them over as stored.
"""

from __future__ import annotations

import ctypes
import logging
import time
from ctypes import byref, c_size_t, c_uint64, c_void_p
from typing import Any, List, Optional

from . import _lib
from ._core import _c_strings, _ms
from ._projection_db import Transient
from .errors import Retry, make_error
from .event import Event
from .projection import DONE, RETRY_MAX_S, _Stop

log = logging.getLogger("herald")


def run(self: Any, lineage: int, timeout: Optional[float]) -> None:
    """Replay (position, until_ts] for the prefixes on this thread, in
    transactions of batch_max events; DONE, or FAILED and raise."""
    pending: List[Event] = []
    raised: List[BaseException] = []
    converter = _Converter(self._core, self._spec) if self._spec else None

    def flush() -> None:
        pause = 0.01
        while pending:
            try:
                done = self._project(list(pending), lineage)
                del pending[:done]
            except (Transient, Retry) as exc:
                del pending[:getattr(exc, "handled", 0)]
                if self._closed:
                    raise
                time.sleep(pause)           # the agent's backoff, as a live one's
                pause = min(pause * 2, RETRY_MAX_S)
    def each(view_p, _arg) -> int:
        try:
            view = view_p.contents
            event = Event._from_view(view)
            if converter is not None:
                event = converter.convert(view_p, event)
                if event is None:
                    return _lib.OK
            pending.append(event)
            if len(pending) >= self.batch_max:
                flush()
            return _lib.OK
        except BaseException as exc:
            raised.append(exc)
            return _lib.ERR_INTERNAL
    c_each = _lib.HANDLER_FN(each)
    array = _c_strings(self.prefixes)
    limit = time.monotonic() + (timeout if timeout is not None else self._core_timeout())
    pause = 0.01
    with self._lock:
        while True:
            span = _lib.Range()
            span.from_ = self._position + 1
            span.until_ts = self.until_ts
            span.prefixes = ctypes.cast(array, ctypes.POINTER(ctypes.c_char_p))
            last = c_uint64(0)
            code = self._core.call(_lib.lib.herald_agent_replay, byref(span), c_each,
                                   None, _ms(timeout), byref(last))
            if not raised and code in (_lib.OK, _lib.ERR_OVERLOADED):
                try:
                    flush()                 # what came before an overload is good
                except BaseException as exc:
                    raised.append(exc)
            #  An overloaded broker (too many streams) is asked again from
            #  the position reached, with a backoff, for up to timeout
            if raised or code != _lib.ERR_OVERLOADED or \
                    time.monotonic() + pause > limit:
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
    if raised or code != _lib.OK:
        error = raised[0] if raised else make_error(code)
        if isinstance(error, _Stop):
            error = error.error
        self._set_failed(error)
        raise error
    with self._changed:
        self._state = DONE
        self._changed.notify_all()


class _Converter:
    """A temporal projection's schema conversion (herald_agent_convert):
    what a subscription with ``schemas=`` does, for replayed events."""

    def __init__(self, core: Any, spec: Any):
        self.core = core
        self.spec = spec

    def convert(self, view_p: Any, event: Event) -> Optional[Event]:
        want = self.spec.schemas.get(event.type or "", self.spec.default) \
            if event.type else None
        if not want or want == event.schema:
            return event
        data, size = c_void_p(), c_size_t(0)
        code = _lib.lib.herald_agent_convert(self.core.ptr, view_p, want, byref(data),
                                             byref(size))
        if code != _lib.OK:
            _, message = _lib.last_error()
            reason = message or "no conversion of %s from schema %d to %d" % (
                event.type, event.schema, want)
            if self.spec.policy == "stop":
                raise make_error(_lib.ERR_UNSUPPORTED, "seq %d: %s" % (event.seq, reason))
            if self.spec.policy == "park" and self.spec.on_parked is not None:
                self.spec.on_parked(event, reason)
            else:
                log.warning("herald: seq %d skipped: %s", event.seq, reason)
            return None
        try:
            event.data = ctypes.string_at(data, size.value) if size.value else b""
        finally:
            _lib.libc.free(data)
        event.stored_schema, event.schema = event.schema, want
        return event

"""_lib - libherald through ctypes: the library, its structs and prototypes.

Internal.  Everything the package does goes through the C agent here; no
part of the protocol is implemented in Python.

Where the library comes from, first match wins:

1. ``$HERALD_LIB``: the path of ``libherald.so`` (or ``.so.1``) to load;
2. ``$HERALD_BUILDDIR/.libs/libherald.so.1``: a build tree (``make check``
   sets HERALD_BUILDDIR);
3. the build tree this package sits in, when it is imported from the
   source tree (``bindings/python/herald`` -> ``../../../.libs``);
4. the system's: ``libherald.so.1`` through the dynamic linker (after
   ``make install`` and ``ldconfig``).

Every call through a ``ctypes.CDLL`` releases the GIL for its duration, so
blocking calls (publish, flush, read, replay, subscribe "now") never hold
up other Python threads; callbacks from the agent's threads take the GIL
back (ctypes does both).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pathlib
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char, c_char_p, c_int,
                    c_size_t, c_uint, c_uint8, c_uint64, c_void_p)

# herald_err values (include/herald.h)
OK = 0
ERR_BAD_REQUEST = 1
ERR_TOO_LARGE = 2
ERR_CONFLICT = 3
ERR_NOT_LEADER = 4
ERR_UNAUTHORIZED = 5
ERR_OVERLOADED = 6
ERR_UNKNOWN_COMMAND = 7
ERR_UNSUPPORTED = 8
ERR_INTERNAL = 9
ERR_TRIMMED = 10
ERR_IO = 20
ERR_LOCKED = 21
ERR_NOT_A_STORE = 22
ERR_CORRUPT = 23
ERR_NOT_FOUND = 24
ERR_NOMEM = 25
ERR_TIMEOUT = 26
ERR_UNAVAILABLE = 27
ERR_INVALID = 28
ERR_DATA_LOST = 29
ERR_ID_REUSED = 30
RETRY = -1
DEFER = -2

START_BEGINNING = 0
START_NOW = 1
START_SEQ = 2
START_TS = 3


class Meta(Structure):
    _fields_ = [("key", c_void_p), ("key_len", c_size_t),
                ("value", c_void_p), ("value_len", c_size_t)]


ON_ERROR_FN = CFUNCTYPE(None, c_char_p, c_int, c_char_p, c_void_p)


class Options(Structure):
    _fields_ = [("api", c_char_p), ("fanout", c_char_p), ("state_dir", c_char_p),
                ("timeout_ms", c_int), ("heartbeat_ms", c_int),
                ("dedup_window", c_size_t), ("live_buffer", c_size_t),
                ("outbox_max_events", c_size_t), ("outbox_max_bytes", c_size_t),
                ("outbox_fsync", c_bool), ("sync_interval_ms", c_int),
                ("retry_max_ms", c_int), ("sub_rcvhwm", c_int),
                ("on_error", ON_ERROR_FN), ("on_error_arg", c_void_p),
                ("dispatch", c_bool), ("key_file", c_char_p), ("server_key", c_char_p)]


class Start(Structure):
    _fields_ = [("kind", c_int), ("value", c_uint64)]


class Delivery(Structure):
    _fields_ = [("id", c_void_p), ("topic", c_void_p), ("topic_len", c_size_t),
                ("seq", c_uint64), ("ver", c_uint64), ("ts", c_uint64),
                ("type", c_void_p), ("type_len", c_size_t), ("schema", c_uint64),
                ("meta", POINTER(Meta)), ("meta_count", c_size_t),
                ("data", c_void_p), ("data_len", c_size_t),
                ("envelope", c_void_p), ("envelope_len", c_size_t),
                ("subscription", c_char_p), ("redelivered", c_bool), ("attempt", c_uint)]


HANDLER_FN = CFUNCTYPE(c_int, POINTER(Delivery), c_void_p)


class DeliveryBatch(Structure):
    """herald_delivery_batch_t (batch handlers).  ``size`` is the
    library's: only the fields up to ``handled`` are read."""
    _fields_ = [("size", c_size_t), ("subscription", c_char_p),
                ("events", POINTER(Delivery)), ("count", c_size_t),
                ("envelopes", c_void_p), ("envelopes_len", c_size_t),
                ("redelivered", c_void_p), ("attempt", c_uint), ("handled", c_size_t)]


BATCH_HANDLER_FN = CFUNCTYPE(c_int, POINTER(DeliveryBatch), c_void_p)


class SubStatus(Structure):
    _fields_ = [("state", c_int), ("delivered_seq", c_uint64), ("delivered", c_uint64),
                ("duplicates", c_uint64), ("retries", c_uint64), ("error", c_int),
                ("message", c_char * 256), ("gaps", c_uint64), ("repair_replays", c_uint64),
                ("live_wait_ms", c_uint64), ("data_lost", c_uint64), ("lineage", c_uint64)]


class GroupOptions(Structure):
    _fields_ = [("prefixes", POINTER(c_char_p)), ("start", Start), ("partitions", c_uint),
                ("session_ms", c_int), ("batch_max", c_size_t)]


class GroupStatus(Structure):
    _fields_ = [("member", c_char * 192), ("generation", c_uint64), ("partitions", c_uint),
                ("owned", c_uint), ("committed", c_uint64), ("lag", c_uint64),
                ("commits", c_uint64), ("redelivered", c_uint64), ("rebalances", c_uint64),
                ("fenced", c_uint64), ("joined", c_bool)]


class Outgoing(Structure):
    _fields_ = [("topic", c_char_p), ("data", c_void_p), ("data_len", c_size_t),
                ("type", c_char_p), ("schema", c_uint64), ("meta", POINTER(Meta)),
                ("meta_count", c_size_t), ("has_expect", c_bool), ("expect", c_uint64),
                ("id", c_void_p)]


class PublishResult(Structure):
    _fields_ = [("id", c_uint8 * 16), ("err", c_int), ("seq", c_uint64), ("ver", c_uint64),
                ("dup", c_bool), ("expected", c_uint64), ("actual", c_uint64),
                ("message", c_char * 192)]


PUBLISH_FN = CFUNCTYPE(None, POINTER(PublishResult), c_void_p)


class Range(Structure):
    _fields_ = [("from_", c_uint64), ("from_ts", c_uint64), ("to", c_uint64),
                ("until_ts", c_uint64), ("prefixes", POINTER(c_char_p))]


class Stats(Structure):
    _fields_ = [("delivered", c_uint64), ("duplicates", c_uint64),
                ("gaps_repaired", c_uint64), ("replays", c_uint64),
                ("live_overflows", c_uint64), ("retries", c_uint64),
                ("published", c_uint64), ("publish_errors", c_uint64),
                ("outbox_depth", c_uint64), ("outbox_bytes", c_uint64),
                ("broker_head", c_uint64), ("broker_epoch", c_uint64), ("lag", c_uint64),
                ("broker_reachable", c_bool), ("state_recovered", c_uint64),
                ("replay_errors", c_uint64),
                ("repair_replays", c_uint64), ("gaps", c_uint64), ("data_lost", c_uint64),
                ("broker_lineage", c_uint64), ("node", c_char * 128),
                ("node_api", c_char * 256), ("failovers", c_uint64),
                ("leader_redirects", c_uint64), ("nodes_known", c_uint64),
                ("auth_refused", c_uint64)]


_PROTOTYPES = {
    "herald_strerror": (c_char_p, [c_int]),
    "herald_err_code": (c_char_p, [c_int]),
    "herald_version": (c_char_p, []),
    "herald_agent_options_size": (c_size_t, []),
    "herald_agent_options_init": (None, [POINTER(Options)]),
    "herald_agent_new": (c_void_p, [c_char_p, POINTER(Options)]),
    "herald_agent_destroy": (None, [POINTER(c_void_p)]),
    "herald_agent_last_errcode": (c_int, []),
    "herald_agent_last_error": (c_char_p, []),
    "herald_agent_subscribe": (c_int, [c_void_p, c_char_p, POINTER(c_char_p), Start,
                                       HANDLER_FN, c_void_p]),
    "herald_agent_unsubscribe": (c_int, [c_void_p, c_char_p]),
    "herald_agent_sub_status": (c_int, [c_void_p, c_char_p, POINTER(SubStatus)]),
    "herald_agent_publish": (c_int, [c_void_p, POINTER(Outgoing), POINTER(PublishResult),
                                     c_int]),
    "herald_agent_publish_async": (c_int, [c_void_p, POINTER(Outgoing), PUBLISH_FN, c_void_p,
                                           c_void_p]),
    "herald_agent_flush": (c_int, [c_void_p, c_int]),
    "herald_agent_read": (c_int, [c_void_p, c_char_p, c_uint64, c_uint64, HANDLER_FN,
                                  c_void_p, c_int]),
    "herald_agent_replay": (c_int, [c_void_p, POINTER(Range), HANDLER_FN, c_void_p, c_int,
                                    POINTER(c_uint64)]),
    "herald_agent_snapshot_save": (c_int, [c_void_p, c_char_p, c_uint64, c_void_p,
                                           c_size_t]),
    "herald_agent_snapshot_load": (c_int, [c_void_p, c_char_p, POINTER(c_uint64),
                                           POINTER(c_void_p), POINTER(c_size_t)]),
    "herald_agent_stats": (None, [c_void_p, POINTER(Stats)]),
    "herald_agent_fd": (c_int, [c_void_p]),
    "herald_agent_dispatch": (c_int, [c_void_p, c_int]),
    "herald_agent_defer": (c_uint64, [c_void_p]),
    "herald_agent_complete": (c_int, [c_void_p, c_uint64, c_int]),
    "herald_group_options_size": (c_size_t, []),
    "herald_group_options_init": (None, [POINTER(GroupOptions)]),
    "herald_agent_subscribe_group": (c_int, [c_void_p, c_char_p, POINTER(GroupOptions),
                                             HANDLER_FN, c_void_p]),
    "herald_agent_complete_batch": (c_int, [c_void_p, c_uint64, c_int, c_size_t]),
    "herald_agent_subscribe_batch": (c_int, [c_void_p, c_char_p, POINTER(c_char_p), Start,
                                             BATCH_HANDLER_FN, c_void_p]),
    "herald_agent_subscribe_group_batch": (c_int, [c_void_p, c_char_p, POINTER(GroupOptions),
                                                   BATCH_HANDLER_FN, c_void_p]),
    "herald_agent_group_status": (c_int, [c_void_p, c_char_p, POINTER(GroupStatus)]),
}


# Added with the Python binding (dispatch mode): absent from libherald 0.1.0
# as first released; only AsyncAgent needs them.
_DISPATCH_CALLS = {"herald_agent_fd", "herald_agent_dispatch", "herald_agent_defer",
                   "herald_agent_complete"}

# Batch handlers: absent from a libherald older than them;
# only subscribe(batch=True) needs them (``has_batch``).
_BATCH_CALLS = {"herald_agent_subscribe_batch", "herald_agent_subscribe_group_batch",
                "herald_agent_complete_batch"}

# Consumer groups (docs/groups.md): absent from a libherald older than them;
# only a group subscription needs them (``has_groups`` says whether it can).
_GROUP_CALLS = {"herald_group_options_size", "herald_group_options_init",
                "herald_agent_subscribe_group", "herald_agent_group_status"}


def _candidates():
    env = os.environ.get("HERALD_LIB")
    if env:
        yield env
        return
    builddir = os.environ.get("HERALD_BUILDDIR")
    if builddir:
        yield str(pathlib.Path(builddir) / ".libs" / "libherald.so.1")
    here = pathlib.Path(__file__).resolve().parent
    tree = here.parent.parent.parent / ".libs" / "libherald.so.1"
    if tree.exists():
        yield str(tree)
    yield "libherald.so.1"
    found = ctypes.util.find_library("herald")
    if found:
        yield found


def _load():
    errors = []
    for candidate in _candidates():
        try:
            lib = ctypes.CDLL(candidate)
        except OSError as exc:
            errors.append("%s: %s" % (candidate, exc))
            continue
        for name, (restype, argtypes) in _PROTOTYPES.items():
            try:
                function = getattr(lib, name)
            except AttributeError:          # an older libherald: AsyncAgent or groups need it
                if name == "herald_agent_options_size":
                    raise ImportError("herald: %s has no herald_agent_options_size: a "
                                      "libherald older than this binding, whose "
                                      "herald_agent_options_t is shorter than its Options"
                                      % candidate) from None
                if name not in _DISPATCH_CALLS and name not in _GROUP_CALLS \
                        and name not in _BATCH_CALLS:
                    raise
                continue
            function.restype = restype
            function.argtypes = argtypes
        # herald_agent_options_init writes the whole C struct into ours: a
        # library whose struct differs would corrupt memory, not fail
        size = lib.herald_agent_options_size()
        if size != ctypes.sizeof(Options):
            raise ImportError("herald: %s lays out herald_agent_options_t in %d bytes, this "
                              "binding in %d: the library and the binding are of different "
                              "versions" % (candidate, size, ctypes.sizeof(Options)))
        # herald_group_options_init too (a library with consumer groups)
        if hasattr(lib, "herald_group_options_size"):
            size = lib.herald_group_options_size()
            if size != ctypes.sizeof(GroupOptions):
                raise ImportError("herald: %s lays out herald_group_options_t in %d bytes, "
                                  "this binding in %d: the library and the binding are of "
                                  "different versions"
                                  % (candidate, size, ctypes.sizeof(GroupOptions)))
        # herald_outgoing_t and herald_range_t (a library with their size
        # functions, libherald 2:0:1 and later)
        for function, ours in (("herald_outgoing_size", Outgoing), ("herald_range_size", Range)):
            if hasattr(lib, function):
                getattr(lib, function).restype = c_size_t
                getattr(lib, function).argtypes = []
                size = getattr(lib, function)()
                if size != ctypes.sizeof(ours):
                    raise ImportError("herald: %s says %s is %d bytes, this binding lays it "
                                      "out in %d: the library and the binding are of "
                                      "different versions"
                                      % (candidate, function, size, ctypes.sizeof(ours)))
        return lib, candidate
    raise ImportError("herald: cannot load libherald (set HERALD_LIB to its path, or "
                      "install it): " + "; ".join(errors))


lib, path = _load()
#: The library has consumer groups (herald_agent_subscribe_group and its kin).
has_groups = all(hasattr(lib, name) for name in _GROUP_CALLS)
#: The library has batch handlers (herald_agent_subscribe_batch).
has_batch = all(hasattr(lib, name) for name in _BATCH_CALLS)

libc = ctypes.CDLL(None)
libc.free.argtypes = [c_void_p]
libc.free.restype = None


def last_error():
    """(code, message) of the calling thread's last failed agent call."""
    message = lib.herald_agent_last_error()
    return lib.herald_agent_last_errcode(), (message or b"").decode("utf-8", "replace")


# Python objects handed to C as a void * arg: a number names them here, so
# C never holds a pointer to a Python object that could be collected.
class Registry:
    def __init__(self):
        self._lock = threading.Lock()
        self._next = 1
        self._items = {}

    def add(self, item):
        with self._lock:
            key = self._next
            self._next += 1
            self._items[key] = item
            return key

    def get(self, key):
        return self._items.get(key)

    def pop(self, key):
        with self._lock:
            return self._items.pop(key, None)

    def drain(self):
        with self._lock:
            items, self._items = list(self._items.values()), {}
            return items


# -- Schema evolution (include/herald.h, "Schema evolution"; docs/schemas.md) --
# Absent from a libherald older than issue 16: ``has_schemas`` says whether
# upcasters, downcasters and subscribe(schemas=...) can be used.

class CastResult(Structure):
    _fields_ = [("buffer", c_void_p), ("capacity", c_size_t), ("data", c_void_p),
                ("data_len", c_size_t), ("message", c_char * 256)]


CASTER_FN = CFUNCTYPE(c_int, POINTER(Delivery), POINTER(CastResult), c_void_p)
PARKED_FN = CFUNCTYPE(None, POINTER(Delivery), c_char_p, c_void_p)

SCHEMA_STOP = 0
SCHEMA_SKIP = 1
SCHEMA_PARK = 2


class SchemaWant(Structure):
    _fields_ = [("type", c_char_p), ("schema", c_uint64)]


class SubscribeOptions(Structure):
    _fields_ = [("prefixes", POINTER(c_char_p)), ("start", Start),
                ("group", POINTER(GroupOptions)), ("wants", POINTER(SchemaWant)),
                ("want_count", c_size_t), ("default_schema", c_uint64),
                ("on_incompatible", c_int), ("on_parked", PARKED_FN),
                ("on_parked_arg", c_void_p), ("caller_position", c_bool)]


class SchemaStats(Structure):
    _fields_ = [("upcast", c_uint64), ("downcast", c_uint64), ("skipped", c_uint64),
                ("parked", c_uint64), ("stopped", c_uint64)]


_SCHEMA_PROTOTYPES = {
    "herald_agent_upcaster": (c_int, [c_void_p, c_char_p, c_uint64, CASTER_FN, c_void_p]),
    "herald_agent_downcaster": (c_int, [c_void_p, c_char_p, c_uint64, CASTER_FN, c_void_p]),
    "herald_subscribe_options_size": (c_size_t, []),
    "herald_subscribe_options_init": (None, [POINTER(SubscribeOptions)]),
    "herald_agent_subscribe_with": (c_int, [c_void_p, c_char_p, POINTER(SubscribeOptions),
                                            HANDLER_FN, c_void_p]),
    "herald_agent_convert": (c_int, [c_void_p, POINTER(Delivery), c_uint64,
                                     POINTER(c_void_p), POINTER(c_size_t)]),
    "herald_delivery_stored_schema": (c_uint64, [POINTER(Delivery)]),
    "herald_agent_parked": (c_int, [c_void_p, c_char_p, PARKED_FN, c_void_p]),
    "herald_agent_parked_replay": (c_int, [c_void_p, c_char_p, HANDLER_FN, c_void_p]),
    "herald_schema_stats_size": (c_size_t, []),
    "herald_agent_schema_stats": (c_int, [c_void_p, c_char_p, POINTER(SchemaStats)]),
}


def _bind_schemas() -> bool:
    if not all(hasattr(lib, name) for name in _SCHEMA_PROTOTYPES):
        return False
    for name, (restype, argtypes) in _SCHEMA_PROTOTYPES.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    # The struct the library inits must be the one laid out here
    for label, size, ours in (("herald_subscribe_options_t",
                               lib.herald_subscribe_options_size(), SubscribeOptions),
                              ("herald_schema_stats_t", lib.herald_schema_stats_size(),
                               SchemaStats)):
        if size != ctypes.sizeof(ours):
            raise ImportError("herald: %s lays out %s in %d bytes, this binding in %d: the "
                              "library and the binding are of different versions"
                              % (path, label, size, ctypes.sizeof(ours)))
    return True


#: The library has schema evolution (upcasters, subscribe_with).
has_schemas = _bind_schemas()

#: The library has herald_agent_subscribe_batch_with (batch handlers with
#: schemas, caller_position) and honours SubscribeOptions.caller_position:
#: a libherald with schemas but older than them has neither.
has_batch_with = has_schemas and hasattr(lib, "herald_agent_subscribe_batch_with")
if has_batch_with:
    lib.herald_agent_subscribe_batch_with.restype = c_int
    lib.herald_agent_subscribe_batch_with.argtypes = [c_void_p, c_char_p,
                                                      POINTER(SubscribeOptions),
                                                      BATCH_HANDLER_FN, c_void_p]
libc.malloc.argtypes = [c_size_t]
libc.malloc.restype = c_void_p

"""herald.set_log: the library's log lines to a Python callable.

libherald says what a service should know but no call returns (a torn
state record it recovered from, a subscription that failed with no
on_error, a broker it moved away from) as lines on stderr, or to the one
callback of herald_set_log (herald.h).  This is that callback for Python:
``set_log(fn)`` calls ``fn(level, message)`` on the library's threads, one
call at a time; ``set_log(None)`` restores stderr.
"""

import atexit
import threading
from ctypes import CFUNCTYPE, c_char_p, c_int, c_void_p
from typing import Callable, Optional

from . import _lib

#: Levels of herald_log_level_t (more may be added: treat an unknown one as
#: a warning).
LOG_ERROR = 1
LOG_WARNING = 2

LOG_FN = CFUNCTYPE(None, c_int, c_char_p, c_void_p)

_lock = threading.Lock()
_installed = None       # the LOG_FN in force: kept alive while C may call it


def _bind() -> bool:
    if not hasattr(_lib.lib, "herald_set_log"):
        return False
    _lib.lib.herald_set_log.restype = c_int
    _lib.lib.herald_set_log.argtypes = [LOG_FN, c_void_p]
    return True


#: The library has herald_set_log (libherald 2:0:1 and later).
has_set_log = _bind()


def set_log(fn: Optional[Callable[[int, str], None]]) -> None:
    """Send libherald's log lines to ``fn(level, message)`` (level
    LOG_ERROR or LOG_WARNING, message one line without a newline), for the
    whole process; None restores stderr.  fn runs on the library's threads
    and should return quickly; an exception it raises is reported by
    ``sys.unraisablehook`` and the line is dropped.  fn must not call into
    herald: set_log raises InvalidArgumentError there, an agent's method may
    deadlock."""
    global _installed
    if not has_set_log:
        raise NotImplementedError("herald: %s has no herald_set_log (older than "
                                  "libherald 2:0:1)" % _lib.path)
    from .errors import make_error

    if fn is None:
        c_fn = LOG_FN()                 # NULL
    else:
        def call(level, message, _arg):
            fn(level, message.decode("utf-8", "replace"))
        c_fn = LOG_FN(call)
    with _lock:
        rc = _lib.lib.herald_set_log(c_fn, None)
        if rc:
            raise make_error(rc)
        # Once herald_set_log returned, C no longer calls the previous one
        _installed = c_fn if fn is not None else None


def _at_exit() -> None:
    # A library thread must not call into an interpreter that is gone
    if has_set_log and _installed is not None:
        _lib.lib.herald_set_log(LOG_FN(), None)


atexit.register(_at_exit)

"""Keep other processes of the same OS user out of this one's memory and environment.

On Linux, ``prctl(PR_SET_DUMPABLE, 0)`` makes ``/proc/PID/environ``, ``/proc/PID/mem``
and ptrace unavailable to everyone but root, so a user's script (same OS user as the
server and its workers) cannot read the master key or the store URL out of them. No
core dumps either: they would hold the same secrets. Elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return int(libc.prctl(option, arg, 0, 0, 0))


def harden_process() -> bool:
    """Make this process non-dumpable; True where that took effect (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    return _prctl(PR_SET_DUMPABLE, 0) == 0 and dumpable() is False


def dumpable() -> bool | None:
    """Whether this process is dumpable (None where that cannot be asked)."""
    if not sys.platform.startswith("linux"):
        return None
    return _prctl(PR_GET_DUMPABLE) == 1

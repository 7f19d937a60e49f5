"""Helpers every child process of Despina shares: one thread per process, exit with the parent.

Workers, script hosts, Ray tasks and cross-validation folds run several processes on a
few cores; each keeps its numeric libraries to one thread and none outlives its parent.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

#: Set before torch or NumPy start: their thread pools read these once, at import.
THREAD_LIMITS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def limit_threads() -> None:
    """One intra-op thread in this process: two per process on a busy core slow torch badly.

    Set through the environment before torch is imported (torch reads it at start-up), so
    tasks that never use torch do not pay for importing it.
    """
    for var, value in THREAD_LIMITS.items():
        os.environ.setdefault(var, value)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)


PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int, parent_pid: int) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux), which
    works even while this process is stuck in a C call that holds the interpreter lock;
    elsewhere, and as a second line, :func:`exit_with_parent`'s watcher thread."""
    if sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the kernel was told
        os._exit(3)
    exit_with_parent(parent_pid)


def exit_with_parent(parent_pid: int) -> None:
    """Exit as soon as ``parent_pid`` is no longer our parent (it died or was killed), so
    no task runs unsupervised; a daemon thread checks twice a second."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(3)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def reset_peak_rss() -> bool:
    """Start this process's peak resident memory afresh (Linux: ``clear_refs`` 5), so that
    :func:`peak_rss_mib` reports the peak of what runs next; False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float | None:
    """This process's peak resident memory in MiB since start or the last reset (Linux's
    VmHWM); None where /proc is not there."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None

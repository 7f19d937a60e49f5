"""The code a worker process (or a Ray task) runs: execute tasks by id against the store."""

from __future__ import annotations

import signal
from multiprocessing.connection import Connection
from typing import Any

from despina.core.errors import TaskError
from despina.core.processes import die_with_parent, limit_threads


def run_one(store_url: str, task_id: int, where: str = "") -> dict[str, Any]:
    """Execute one task in this process; raise TaskError with a one-line reason on failure.
    ``where``: the place it runs, named in its log (a Ray node)."""
    from despina.control.dispatch import execute
    from despina.control.store import Store

    store = Store(store_url, migrate_schema=False)
    try:
        return execute(store, task_id, where)
    finally:
        store.close()


def worker_main(conn: Connection, parent_pid: int) -> None:
    """Receive the store's URL, then loop: receive a task id, run it, send back
    ``(task_id, ok, reason, result)``. The URL (it may hold a password) comes over the
    socket, never on the command line, where ``ps`` would show it to every user."""
    from despina.security.process import harden_process

    harden_process()  # it may hold the master key: keep same-user scripts out of it
    try:
        store_url = conn.recv()
    except (EOFError, OSError):
        return
    limit_threads()
    die_with_parent(signal.SIGKILL, parent_pid)  # its script host then kills its job
    from despina.control.dispatch import execute
    from despina.control.store import Store

    store = Store(store_url, migrate_schema=False)
    while True:
        try:
            task_id = conn.recv()
        except (EOFError, OSError):
            return
        if task_id is None:
            return
        try:
            result = execute(store, task_id)
            conn.send((task_id, True, None, result))
        except TaskError as exc:
            conn.send((task_id, False, str(exc), {}))
        except BaseException as exc:  # the store itself failed; report, keep serving
            conn.send((task_id, False, f"{type(exc).__name__}: {exc}", {}))


if __name__ == "__main__":
    # ``python -m despina.control.worker FD PARENT_PID``: started by the local
    # executor with one end of a socket pair (a plain process, so the parent's __main__
    # is never re-imported, unlike multiprocessing's spawn).
    import sys

    worker_main(Connection(int(sys.argv[1])), int(sys.argv[2]))

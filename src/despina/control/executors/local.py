"""Local executor: a pool of worker processes on this machine, one task per process at a time.

Each task runs in a separate process, so a crash or a kill ends that task only: the
executor notices the dead process, reports the task failed (the scheduler retries it) and
starts a fresh worker for the next one. Workers are plain ``python -m
despina.control.worker`` processes talking over a socket pair (so a caller's script is
never re-imported, as ``multiprocessing`` spawn would do) and are kept between tasks,
because importing the stack costs seconds (``benchmarks/scaling.py``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from despina.control.executors.base import Outcome
from despina.control.models import Resources


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    task_id: int | None = None


#: Variables of the scheduler's environment that its workers never get.
WITHHELD = frozenset({"DESPINA_ADMIN_TOKEN", "DESPINA_TOKEN", "DESPINA_DATABASE_URL"})


class LocalExecutor:
    """Up to ``workers`` tasks at once, each in its own worker process."""

    def __init__(self, store_url: str, workers: int, sealing: dict[str, str]) -> None:
        self.store_url = store_url
        self.workers = workers
        # Nothing a worker does not need: the store's URL goes over its socket, not argv or
        # the environment, and no token is passed on.
        self.env = {k: v for k, v in os.environ.items() if k not in WITHHELD} | sealing
        self._pool: list[_Worker] = []

    def _spawn(self) -> _Worker:
        mine, theirs = socket.socketpair()
        fd = theirs.fileno()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "despina.control.worker",
                str(fd),
                str(os.getpid()),
            ],
            pass_fds=[fd],
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        theirs.close()
        conn = Connection(os.dup(mine.fileno()))
        mine.close()
        conn.send(self.store_url)  # the first message: where the store is
        worker = _Worker(proc, conn)
        self._pool.append(worker)
        return worker

    def free_slots(self) -> int:
        return self.workers - sum(w.task_id is not None for w in self._pool)

    def active(self) -> list[int]:
        return [w.task_id for w in self._pool if w.task_id is not None]

    def submit(self, task_id: int, resources: Resources) -> None:
        if self.free_slots() <= 0:
            raise RuntimeError("no free worker; the scheduler must respect free_slots()")
        idle = next((w for w in self._pool if w.task_id is None), None) or self._spawn()
        idle.task_id = task_id
        idle.conn.send(task_id)

    def wait(self, timeout: float) -> list[Outcome]:
        busy = [w for w in self._pool if w.task_id is not None]
        if not busy:
            return []
        # A dead worker's socket reads as end-of-file, so one wait() sees both answers
        # and crashes.
        ready = set(wait([w.conn for w in busy], timeout))
        outcomes = []
        for w in busy:
            if w.conn not in ready:
                continue
            try:
                task_id, ok, reason, result = w.conn.recv()
            except (EOFError, OSError):
                try:
                    code = w.process.wait(5)
                except subprocess.TimeoutExpired:
                    w.process.kill()
                    code = w.process.wait()
                outcomes.append(
                    Outcome(
                        w.task_id,  # type: ignore[arg-type]
                        False,
                        f"worker process died (exit code {code})",
                    )
                )
                self._discard(w)
            else:
                outcomes.append(Outcome(task_id, ok, reason, result))
                w.task_id = None
        return outcomes

    def kill(self, task_id: int) -> None:
        for w in list(self._pool):
            if w.task_id == task_id:
                w.process.kill()
                w.process.wait()
                self._discard(w)

    def _discard(self, w: _Worker) -> None:
        w.conn.close()
        self._pool.remove(w)

    def worker_pids(self) -> dict[int, int]:
        """Task id → pid of the process running it (for tests that kill workers)."""
        return {w.task_id: w.process.pid for w in self._pool if w.task_id and w.process.pid}

    def close(self) -> None:
        for w in list(self._pool):
            if w.task_id is None:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
            else:
                w.process.kill()
        for w in list(self._pool):
            try:
                w.process.wait(5)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
            self._discard(w)

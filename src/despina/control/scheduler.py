"""The scheduler: moves tasks through their states and hands them to executors.

One loop, each step: heartbeat what runs here; recover RUNNING tasks whose heartbeat
stopped (their scheduler or worker died); act on cancel requests; kill tasks past their
timeout; release due retries; start PENDING tasks where a cluster has free slots; record
how finished tasks ended. Each state change is committed before it is acted on, and a
PENDING task is claimed with an expected-state check, so two schedulers on one store
never run the same task twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from datetime import timedelta

from despina.control.executors.base import Executor, Outcome
from despina.control.models import SERVE_JOB, Cluster, Task, TaskGroup
from despina.control.settings import ControlSettings
from despina.control.states import TaskState
from despina.control.store import Store
from despina.control.store.common import utcnow
from despina.core.errors import StateError

logger = logging.getLogger(__name__)


def make_executor(store: Store, cluster: Cluster, sealing: dict[str, str]) -> Executor:
    """``sealing``: the environment that tells workers whether (and with which key file)
    to encrypt what tasks write (:func:`despina.control.runtime.output_keyring`)."""
    if cluster.backend == "ray":
        from despina.control.executors.ray import RayExecutor

        return RayExecutor(store.url, cluster, sealing)
    from despina.control.executors.local import LocalExecutor

    return LocalExecutor(store.url, cluster.workers, sealing)


class Scheduler:
    """Runs the started groups of a store (or only ``groups``) on their clusters."""

    def __init__(
        self, store: Store, settings: ControlSettings, groups: Sequence[str] | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.groups = list(groups) if groups is not None else None
        self.executors: dict[str, Executor] = {}
        self._running: dict[int, tuple[str, Task]] = {}  # task id → (cluster, task)
        self._last_heartbeat = 0.0
        self._groups: dict[str, TaskGroup] = {}
        self.stop_event = threading.Event()
        self._wake = threading.Event()

    def wake(self) -> None:
        """Start the next round now (new work was queued or a cancel requested)."""
        self._wake.set()

    # ---- helpers --------------------------------------------------------------------
    def _group(self, name: str) -> TaskGroup:
        if name not in self._groups:
            self._groups[name] = self.store.get_group(name)
        return self._groups[name]

    def _executor(self, cluster_name: str) -> Executor:
        if cluster_name not in self.executors:
            self.executors[cluster_name] = make_executor(
                self.store, self.store.get_cluster(cluster_name), self.settings.sealing_env
            )
        return self.executors[cluster_name]

    def executor_for_task(self, task_id: int) -> Executor | None:
        entry = self._running.get(task_id)
        return self.executors.get(entry[0]) if entry else None

    def fail_or_retry(self, task: Task, reason: str) -> Task:
        """A failed attempt: RETRYING with exponential backoff while retries are left."""
        group = self._group(task.group)
        if task.attempt <= group.max_retries:
            delay = self.settings.retry_backoff_s * 2 ** (task.attempt - 1)
            logger.info(
                "task %d attempt %d failed (%s); retry in %.1fs",
                task.id,
                task.attempt,
                reason,
                delay,
            )
            return self.store.transition(
                task.id,
                TaskState.RETRYING,
                reason=reason,
                not_before=utcnow() + timedelta(seconds=delay),
            )
        return self.store.transition(task.id, TaskState.FAILED, reason=reason)

    # ---- one step -------------------------------------------------------------------
    def step(self, wait_s: float | None = None) -> int:
        """Do one round of work; return how many tasks changed state."""
        changed = 0
        now = time.monotonic()
        if now - self._last_heartbeat >= self.settings.heartbeat_s:
            self._last_heartbeat = now
            self.store.heartbeat(list(self._running))
            for task in self.store.stale_running(self.settings.stale_after_s, list(self._running)):
                if self.groups is not None and task.group not in self.groups:
                    continue
                if self._group(task.group).job == SERVE_JOB:
                    continue  # a deployment: the next server to host it takes it over
                try:
                    self.fail_or_retry(
                        task, "heartbeat lost: the worker or scheduler running it died"
                    )
                    changed += 1
                except StateError:
                    pass  # another scheduler got there first
        changed += self._cancels()
        changed += self._timeouts()
        for task in self.store.due_retries(self.groups):
            try:
                self.store.transition(task.id, TaskState.PENDING, expect=TaskState.RETRYING)
                changed += 1
            except StateError:
                pass
        changed += self._dispatch()
        changed += self._collect(self.settings.poll_s if wait_s is None else wait_s)
        return changed

    def _cancels(self) -> int:
        n = 0
        for task in self.store.cancel_requests():
            if task.id not in self._running and task.state is TaskState.RUNNING:
                continue  # another scheduler runs it
            ex = self.executor_for_task(task.id)
            if ex is not None:
                ex.kill(task.id)
                self._running.pop(task.id, None)
            try:
                self.store.transition(task.id, TaskState.CANCELLED, reason="cancelled by user")
                n += 1
            except StateError:
                pass
        return n

    def _timeouts(self) -> int:
        n = 0
        for tid, (cluster, task) in list(self._running.items()):
            timeout = self._group(task.group).timeout_s
            if timeout is None or task.started_at is None:
                continue
            if (utcnow() - task.started_at).total_seconds() > timeout:
                self.executors[cluster].kill(tid)
                del self._running[tid]
                self.store.transition(
                    tid, TaskState.FAILED, reason=f"timed out after {timeout:g}s and was killed"
                )
                n += 1
        return n

    def _dispatch(self) -> int:
        n = 0
        groups = self.store.list_groups()
        by_cluster: dict[str, list[str]] = {}
        for g in groups:
            if g.started_at is None or (self.groups is not None and g.name not in self.groups):
                continue
            if g.job == SERVE_JOB or g.cluster is None:
                continue  # deployments are hosted by a server, not run by an executor
            self._groups[g.name] = g
            by_cluster.setdefault(g.cluster, []).append(g.name)
        for cluster, names in by_cluster.items():
            ex = self._executor(cluster)
            free = ex.free_slots()
            if free <= 0:
                continue
            for task in self.store.claimable(names, free):
                try:
                    running = self.store.transition(
                        task.id, TaskState.RUNNING, expect=TaskState.PENDING
                    )
                except StateError:
                    continue  # claimed by another scheduler
                self._running[task.id] = (cluster, running)
                ex.submit(task.id, self._group(task.group).resources)
                n += 1
        return n

    def _collect(self, wait_s: float) -> int:
        outcomes: list[Outcome] = []
        busy = [ex for ex in self.executors.values() if ex.active()]
        if not busy:
            self._wake.wait(wait_s)
            self._wake.clear()
            return 0
        # Executors with nothing running are skipped: waiting on them would delay
        # noticing the ones whose tasks end.
        share = wait_s / len(busy)
        for ex in busy:
            outcomes += ex.wait(share)
        for out in outcomes:
            entry = self._running.pop(out.task_id, None)
            if entry is None:
                continue
            try:
                if out.ok:
                    self.store.transition(
                        out.task_id,
                        TaskState.SUCCEEDED,
                        metrics=out.result.get("metrics", {}),
                        outputs=out.result.get("outputs", []),
                        done=out.result.get("done", 0),
                        total=out.result.get("total"),
                    )
                else:
                    self.fail_or_retry(self.store.get_task(out.task_id), out.reason or "failed")
            except StateError:
                pass  # cancelled meanwhile
        return len(outcomes)

    # ---- loops ----------------------------------------------------------------------
    def unfinished(self) -> bool:
        """Whether any task of this scheduler's groups is not terminal yet."""
        if self.groups is None:  # every group but deployments, which run until stopped
            counts = self.store.count_tasks(without_job=SERVE_JOB)
        else:
            counts = {s: 0 for s in TaskState}
            for g in self.groups:
                for s, k in self.store.count_tasks(g).items():
                    counts[s] += k
        return any(k for s, k in counts.items() if not s.terminal)

    def run(self, until_done: bool = False) -> None:
        """Step until stopped (or, with ``until_done``, until every task is terminal)."""
        try:
            while not self.stop_event.is_set():
                self.step()
                if until_done and not self._running and not self.unfinished():
                    break
        finally:
            self.close()

    def close(self) -> None:
        """Stop executors; tasks still running here go back to the queue (or fail)."""
        for ex in self.executors.values():
            ex.close()
        self.executors.clear()
        for _tid, (_, task) in list(self._running.items()):
            with contextlib.suppress(StateError):
                self.fail_or_retry(task, "the scheduler stopped while it ran")
        self._running.clear()

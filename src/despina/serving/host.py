"""The deployments a server hosts: long-running tasks of the control plane.

Each registered deployment has a task group (job ``serve``) with one task; the server
that hosts it claims that task (PENDING → RUNNING, with an expected-state check, so two
servers on one store never both serve it), heartbeats it while it serves, and writes
what happens to the task's log. ``despina task cancel`` stops the serving (CANCELLED),
``despina task retry`` serves it again, a folder that fails to load ends FAILED with the
reason, and a server that stops hands its deployments back (RETRYING) for the next
server start. A server that died leaves a RUNNING task whose heartbeat stops; the next
server takes it over.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from despina.control.models import Deployment as DeploymentRecord
from despina.control.models import Task
from despina.control.plane import ControlPlane
from despina.control.states import TaskState
from despina.control.store.common import utcnow
from despina.core.errors import NotFoundError, OverloadedError, StateError
from despina.serving.budget import PixelBudget
from despina.serving.deployment import Deployment
from despina.serving.records import RecordDeployment, is_record_model
from despina.serving.settings import ServingSettings

logger = logging.getLogger(__name__)


def _log(task: Task, line: str) -> None:
    """Append one timestamped line to the task's log (``despina task logs ID``)."""
    path = Path(task.log_path)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {line}\n")


class DeploymentHost:
    """Loaded deployments by name, from a control plane's store or given directly."""

    def __init__(
        self, settings: ServingSettings, plane: ControlPlane | None = None, observer: Any = None
    ) -> None:
        self.settings = settings
        self.plane = plane
        self.observer = observer
        self.started = utcnow()
        self.loaded: dict[str, Any] = {}  # Deployment, or RayServed on a Ray cluster
        self.failed: dict[str, str] = {}
        # deployment name → (task id, attempt) this server holds: a task RUNNING under
        # another attempt was taken over by another server.
        self._tasks: dict[str, tuple[int, int]] = {}
        self._fixed: set[str] = set()
        self._lock = threading.Lock()
        # One sync at a time (the server's loop, a route): a second waits for a
        # deployment the first is loading instead of seeing it claimed and not yet there.
        self._sync_lock = threading.Lock()
        # Set to make the server's sync loop run now (see despina.serving.api).
        self.wake = threading.Event()
        # Large uploads' pixels decoded at once, by all deployments of this process.
        self.budget = PixelBudget(self.settings.decode_budget, self.settings.decode_wait_s)

    def set_observer(self, observer: Any) -> None:
        """Report to ``observer`` (ServingMetrics) from now on, loaded deployments too."""
        with self._lock:
            self.observer = observer
            for dep in self.loaded.values():
                dep.observer = observer

    def add(self, name: str, model: str, extractor: str = "whole") -> Any:
        """Load a deployment that lives only in this server (``despina serve``)."""
        dep: Any = (
            RecordDeployment(name, model, self.settings)
            if is_record_model(model)
            else Deployment(name, model, extractor, self.settings, self.observer, self.budget)
        )
        dep.observer = self.observer
        with self._lock:
            self.loaded[name] = dep
            self._fixed.add(name)
        return dep

    def sync(self) -> None:
        """Keep in step with the store: heartbeat what this server serves, stop what was
        removed or cancelled, and claim and load what waits for a server."""
        if self.plane is None:
            return
        with self._sync_lock:
            self._sync()

    def _sync(self) -> None:
        assert self.plane is not None
        store = self.plane.store
        store.heartbeat([task_id for task_id, _ in self._tasks.values()])
        records = {d.name: d for d in self.plane.list_deployments()}
        for name, (task_id, attempt) in list(self._tasks.items()):
            rec = records.get(name)
            if rec is None or rec.task_id != task_id:
                self._unload(name)  # removed
                continue
            task = store.get_task(task_id)
            if task.cancel_requested and task.state is TaskState.RUNNING:
                self._unload(name)
                with contextlib.suppress(StateError):
                    store.transition(task_id, TaskState.CANCELLED, reason="stopped by user")
                _log(task, "stopped by user")
            elif task.state is not TaskState.RUNNING or task.attempt != attempt:
                self._unload(name)  # moved on, or taken over by another server
        for name in [n for n in self.failed if n not in records]:
            self.failed.pop(name)
        for name, rec in records.items():
            if name not in self.loaded and rec.task_id is not None:
                claimed = self._claim(rec.task_id)
                if claimed is not None:
                    self._load(rec, claimed)

    def _claim(self, task_id: int) -> Task | None:
        """The deployment's task, now RUNNING here, if it waits for a server; else None."""
        assert self.plane is not None
        store = self.plane.store
        task = store.get_task(task_id)
        try:
            if task.state is TaskState.RUNNING and task.heartbeat_at is not None:
                age = (utcnow() - task.heartbeat_at).total_seconds()
                if age < self.plane.settings.stale_after_s:
                    return None  # another server serves it
                task = store.transition(
                    task_id,
                    TaskState.RETRYING,
                    reason="heartbeat lost: the server hosting it stopped",
                    expect=TaskState.RUNNING,
                )
            if task.state is TaskState.RETRYING:
                task = store.transition(task_id, TaskState.PENDING, expect=TaskState.RETRYING)
            if task.state is not TaskState.PENDING or task.cancel_requested:
                return None
            return store.transition(task_id, TaskState.RUNNING, expect=TaskState.PENDING)
        except StateError:
            return None  # another server got there first

    def _load(self, rec: DeploymentRecord, task: Task) -> None:
        assert self.plane is not None
        try:
            cluster = None if rec.cluster is None else self.plane.get_cluster(rec.cluster)
            dep: Any
            if is_record_model(rec.model):  # tables and series: served by this process
                dep = RecordDeployment(rec.name, rec.model, self.settings)
                dep.observer = self.observer
            elif cluster is not None and cluster.backend == "ray":
                from despina.serving.ray_serve import RayServed

                dep = RayServed(rec, cluster, self.settings, self.observer)
            else:
                dep = Deployment(
                    rec.name, rec.model, rec.extractor, self.settings, self.observer, self.budget
                )
        # A folder that broke since deploy time, or Ray failing (which may raise SystemExit
        # from its own threads): the task fails, the server's sync loop goes on.
        except (Exception, SystemExit) as exc:
            logger.warning("deployment %s failed to load: %s", rec.name, exc)
            self.failed[rec.name] = str(exc)
            with contextlib.suppress(StateError):
                self.plane.store.transition(task.id, TaskState.FAILED, reason=str(exc))
            _log(task, f"failed to load {rec.model}: {exc}")
            return
        with self._lock:
            self.loaded[rec.name] = dep
            self._tasks[rec.name] = (task.id, task.attempt)
        self.plane.store.heartbeat([task.id])  # loading (Ray Serve) can take a while
        self.failed.pop(rec.name, None)
        where = f"cluster {rec.cluster}" if rec.cluster else "the server's process"
        _log(task, f"serving {rec.model} ({rec.extractor}) on {where}, attempt {task.attempt}")

    def _unload(self, name: str) -> None:
        with self._lock:
            dep = self.loaded.pop(name, None)
            self._tasks.pop(name, None)
        if dep is not None:
            dep.close()

    def get(self, name: str) -> Any:
        """The loaded deployment ``name``. Called on the event loop, so it never loads
        anything itself (a model, or Ray Serve replicas, can take seconds): a registered
        deployment not loaded yet wakes the server's sync and answers 503 with
        Retry-After; an unknown one is 404."""
        dep = self.loaded.get(name)
        if dep is not None:
            return dep
        if name in self.failed:
            raise NotFoundError(f"deployment {name!r} failed to load: {self.failed[name]}")
        if self.plane is None:
            raise NotFoundError(f"no deployment named {name!r}; see GET /v1/deployments")
        rec = self.plane.get_deployment(name)  # not registered at all: 404
        if rec.state in ("failed", "stopped"):
            raise NotFoundError(
                f"deployment {name!r} is {rec.state}"
                + (f" ({rec.reason})" if rec.reason else "")
                + f"; 'despina task retry {rec.task_id}' serves it again"
            )
        self.wake.set()
        if rec.state == "running":  # its task is held by another server on this store
            raise OverloadedError(
                f"deployment {name!r} is served by another Despina server on the same "
                "store; send requests there (this one takes it over if that one stops)",
                retry_after=5.0,
            )
        raise OverloadedError(
            f"deployment {name!r} is not loaded yet ({rec.state}); retry in a few seconds",
            retry_after=2.0,
        )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.loaded)

    def listing(self) -> list[dict[str, Any]]:
        """Name, model, extractor and state of every deployment this server knows."""
        out: dict[str, dict[str, Any]] = {}
        if self.plane is not None:
            for rec in self.plane.list_deployments():
                out[rec.name] = rec.model_dump(mode="json")
        # A folder served without a store (despina serve) has no record: id 0, since start.
        alone: dict[str, Any] = {"id": 0, "replicas": 1, "cluster": None, "reason": None}
        alone.update(task_id=None, created_at=self.started.isoformat())
        for name, dep in self.snapshot().items():
            out[name] = {**out.get(name, alone), **dep.describe(), "state": "running"}
        return sorted(out.values(), key=lambda d: d["name"])

    def close(self) -> None:
        """Stop serving; hand this server's deployments back for the next server start."""
        with self._lock:
            deps, self.loaded = list(self.loaded.values()), {}
            tasks, self._tasks = dict(self._tasks), {}
        for dep in deps:
            dep.close()
        if self.plane is None:
            return
        for task_id, _ in tasks.values():
            with contextlib.suppress(StateError, NotFoundError):
                task = self.plane.store.transition(
                    task_id,
                    TaskState.RETRYING,
                    reason="the server hosting it stopped; the next server start serves it",
                    expect=TaskState.RUNNING,
                )
                _log(task, "server stopped")

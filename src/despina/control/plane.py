"""The Python API of the control plane: clusters, task groups and tasks, by name.

>>> plane = ControlPlane()                                  # embedded store
>>> plane.create_cluster(ClusterSpec(name="local", workers=2))
>>> plane.create_group(GroupSpec(name="prep", cluster="local", source="fashion-mnist:DIR",
...                              job="preprocess", partitions=4))
>>> plane.start_group("prep", wait=True)
>>> plane.group_result("prep").num_rows
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from despina.control.access import AccessAdmin
from despina.control.builtin_jobs import (
    check_partitions,
    job_parts,
    parse_config,
)
from despina.control.group_env import is_sealed_value, masked, open_env, rewrap_env, seal_env
from despina.control.logs import LOG_CHUNK, log_pieces, read_log
from despina.control.models import (
    SERVE_JOB,
    Cluster,
    ClusterSpec,
    Deployment,
    DeploymentSpec,
    GroupSpec,
    GroupStatus,
    Review,
    Task,
    TaskGroup,
)
from despina.control.partitions import check_source
from despina.control.runtime import partition_context
from despina.control.scheduler import Scheduler
from despina.control.settings import ControlSettings
from despina.control.states import TaskState, group_state
from despina.control.store import Store
from despina.control.store.common import utcnow
from despina.core.errors import ConfigError, ConflictError, NotFoundError
from despina.jobs.batch import PredictConfig
from despina.jobs.model_folder import check_extractor, check_model_folder
from despina.security.chain import load_activity_key
from despina.security.envelope import Keyring, read_artifact, rotate

logger = logging.getLogger(__name__)


def private_folder(folder: Path) -> None:
    """Create ``folder`` owner-only (0700), or tighten an existing one that others can
    enter (as ssh and PostgreSQL refuse a data folder others can read)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(folder.stat().st_mode)
    if mode & 0o077:
        folder.chmod(0o700)
        logger.warning("%s was mode %o; tightened to 0700 (it holds keys and data)", folder, mode)


class ControlPlane(AccessAdmin):
    """Everything a user does with clusters, groups and tasks, on one store."""

    def __init__(self, settings: ControlSettings | None = None, store: Store | None = None) -> None:
        self.settings = settings or ControlSettings.from_env()
        private_folder(self.settings.home)
        key = load_activity_key(self.settings.activity_key_file)
        self.store = store or Store(self.settings.database_url, activity_key=key)
        self.store.activity_key = self.store.activity_key or key
        self._keyring: Keyring | None = None
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after this plane queues or cancels work (a scheduler in the
        same process wakes at once instead of at its next poll)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    @property
    def keyring(self) -> Keyring:
        """The master keys of this plane's home (created on first use, mode 0600)."""
        if self._keyring is None:
            self._keyring = Keyring.load(self.settings.key_file, create=True)
        return self._keyring

    def read_output(self, path: str | Path, context: str | None = None) -> bytes:
        """A file a task wrote, decrypted; with encryption on, a plain one is refused."""
        return read_artifact(path, self.keyring, context, sealed=self.settings.encrypt)

    def rotate_keys(self) -> tuple[str, str, int]:
        """Re-wrap every sealed file under the home with a new master key (see
        :func:`despina.security.envelope.rotate`); the old and new key ids and the count."""
        old = self.keyring
        self._keyring, count = rotate(old, self.settings.home, self._rewrap_envs)
        self._record("keys rotate", f"{old.kid} -> {self._keyring.kid} ({count} artifacts)")
        return old.kid, self._keyring.kid, count

    def _rewrap_envs(self, ring: Keyring) -> int:
        groups = [g for g in self.store.list_groups() if any(map(is_sealed_value, g.env.values()))]
        for group in groups:
            self.store.set_group_env(group.name, rewrap_env(group.env, ring))
        return len(groups)

    def close(self) -> None:
        self.store.close()

    # ---- clusters -------------------------------------------------------------------
    def create_cluster(self, spec: ClusterSpec) -> Cluster:
        if spec.backend == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "the ray backend needs Ray installed: pip install 'despina[ray]'"
                ) from None
        return self.store.create_cluster(spec)

    def list_clusters(self) -> list[Cluster]:
        return self.store.list_clusters()

    def get_cluster(self, name: str) -> Cluster:
        return self.store.get_cluster(name)

    def delete_cluster(self, name: str) -> None:
        self.store.delete_cluster(name)

    # ---- deployments ----------------------------------------------------------------
    def create_deployment(self, spec: DeploymentSpec) -> Deployment:
        """Check the model folder (inside the allowed roots, complete) and extractor now (a
        clear error at deploy time, not at the first request), then record the deployment
        for the server to host."""
        model = str(Path(spec.model).expanduser())
        check_source(model, self.settings.allowed_roots, "model", remote_schemes=())
        folder = check_model_folder(spec.model)
        check_extractor(spec.extractor, folder)
        if spec.cluster is not None:
            cluster = self.store.get_cluster(spec.cluster)
            if cluster.backend == "local" and spec.replicas != 1:
                raise ConfigError(
                    "replicas are for ray clusters; a local cluster serves in-process "
                    "(batching shares the CPUs between requests)"
                )
        record = self.store.create_deployment(
            spec.model_copy(update={"model": str(folder)}), self.settings.logs_dir
        )
        self._changed()
        return record

    def list_deployments(self) -> list[Deployment]:
        return self.store.list_deployments()

    def list_reviews(self, group: str) -> list[Review]:
        return self.store.list_reviews(group)

    def get_deployment(self, name: str) -> Deployment:
        return self.store.get_deployment(name)

    def delete_deployment(self, name: str) -> None:
        self.store.delete_deployment(name)

    # ---- groups ---------------------------------------------------------------------
    def create_group(self, spec: GroupSpec) -> TaskGroup:
        """Validate everything that can be checked now, then record the group."""
        self.store.get_cluster(spec.cluster)
        roots, schemes = self.settings.allowed_roots, self.settings.source_schemes
        check_source(spec.source, roots, remote_schemes=schemes)
        if spec.script is not None:
            check_source(spec.script, roots, "script", remote_schemes=())
            script = Path(spec.script).expanduser().resolve()
            if not script.is_file():
                raise NotFoundError(f"script {script} does not exist")
            spec = spec.model_copy(update={"script": str(script)})
        if spec.job is not None:
            cfg = parse_config(spec.job, spec.config)
            if isinstance(cfg, PredictConfig):  # the job reads this folder: confined too
                check_source(cfg.model, roots, "model", remote_schemes=())
            check_partitions(spec.job, spec.partitions)
        cluster = self.store.get_cluster(spec.cluster)
        need = spec.resources
        have = cluster.resources
        if cluster.backend == "local" and (need.cpus > have.cpus or need.gpus > have.gpus):
            raise ConfigError(
                f"each task asks for {need.cpus:g} CPU(s) and {need.gpus:g} GPU(s) but cluster "
                f"{cluster.name!r} has {have.cpus:g} and {have.gpus:g}; ask for less"
            )
        if spec.source.startswith(("builtin:", "fashion-mnist:")) or "://" in spec.source:
            source = spec.source
        else:
            source = str(Path(spec.source).expanduser().resolve())
        spec = spec.model_copy(update={"source": source})
        output = self.settings.outputs_dir / spec.name
        if self.settings.encrypt and spec.env:
            spec = spec.model_copy(update={"env": seal_env(spec.name, spec.env, self.keyring)})
        return _masked(self.store.create_group(spec, str(output)))

    def get_group(self, name: str) -> TaskGroup:
        return _masked(self.store.get_group(name))

    def list_groups(self, cluster: str | None = None) -> list[TaskGroup]:
        return [_masked(g) for g in self.store.list_groups(cluster)]

    def group_env(self, name: str) -> dict[str, str]:
        """The group's env in the clear (for admins and operators; others see ``***``)."""
        ring = self.keyring if self.settings.encrypt else None
        return open_env(name, self.store.get_group(name).env, ring)

    def delete_group(self, name: str) -> None:
        self.store.delete_group(name)

    def start_group(self, name: str, *, wait: bool = False) -> list[Task]:
        """Split the source into partitions and queue one task each.

        ``wait``: run the tasks in this process until they end. Otherwise something else
        runs them: a server's scheduler, or :meth:`spawn_runner`.
        """
        if self.settings.encrypt:
            _ = self.keyring  # the key must exist before a worker seals with it
        group = self.store.get_group(name)
        if group.job == SERVE_JOB:
            raise ConflictError(
                f"group {name!r} is a deployment: a server serves it while its task runs "
                f"(see 'despina deployments ls'; 'despina task retry ID' serves a stopped one)"
            )
        if group.started_at is not None:
            tasks = self._unfinished(name)
        else:
            check_source(
                group.source,
                self.settings.allowed_roots,
                remote_schemes=self.settings.source_schemes,
            )
            parts = job_parts(group.job, group.source, group.partitions, group.config)
            tasks = self.store.start_group(name, parts, self.settings.logs_dir)
        self._changed()
        if wait:
            self.run(groups=[name], until_done=True)
            return self.list_tasks(group=name)
        return tasks

    def _unfinished(self, name: str) -> list[Task]:
        """A started group's tasks that have not ended: resumed by the next scheduler, which
        retries RUNNING ones whose heartbeat stopped (their runner died)."""
        tasks = [t for t in self.store.list_tasks(group=name) if not t.state.terminal]
        if not tasks:
            raise ConflictError(
                f"group {name!r} has already run to the end; 'despina group retry {name}' "
                "runs its failed tasks again, or create a new group"
            )
        return tasks

    def retry_failed(self, name: str) -> list[Task]:
        """Queue every FAILED or CANCELLED task of the group again; the tasks retried."""
        self.store.get_group(name)
        failed = [
            t
            for t in self.store.list_tasks(group=name)
            if t.state in (TaskState.FAILED, TaskState.CANCELLED)
        ]
        if not failed:
            raise NotFoundError(
                f"group {name!r} has no failed or cancelled task to retry "
                f"(see 'despina group status {name}')"
            )
        return [self.retry_task(t.id) for t in failed]

    def spawn_runner(self, groups: list[str]) -> int:
        """Start a detached process that runs these groups' tasks to the end; its pid."""
        log = self.settings.logs_dir / f"runner-{'-'.join(groups)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "DESPINA_DATABASE_URL": self.settings.database_url}
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "despina.control.runner", *groups],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        return proc.pid

    def run(self, groups: list[str] | None = None, until_done: bool = True) -> None:
        """Run a scheduler in this process (all started groups, or ``groups``)."""
        Scheduler(self.store, self.settings, groups).run(until_done=until_done)

    def group_status(self, name: str) -> GroupStatus:
        group = self.store.get_group(name)
        counts = self.store.count_tasks(name)
        done, total, last_end = self.store.task_progress(name)
        rate = eta = None
        if group.started_at is not None and done:
            finished = all(s.terminal for s, n in counts.items() if n)
            end = last_end if finished and last_end is not None else utcnow()
            elapsed = max((end - group.started_at).total_seconds(), 1e-3)
            rate = done / elapsed
            if total is not None and not finished:
                eta = max(total - done, 0) / rate
        return GroupStatus(
            name=name,
            cluster=group.cluster,
            state="CREATED" if group.started_at is None else group_state(counts),
            counts={s.value: n for s, n in counts.items()},
            output=group.output,
            done=done,
            total=total,
            items_per_second=rate,
            eta_s=eta,
            started_at=group.started_at,
        )

    def group_result(self, name: str) -> pa.Table:
        """The group's rows: every partition's Parquet file, in partition order."""
        tasks = self.store.list_tasks(group=name)
        if not tasks:
            raise NotFoundError(f"group {name!r} has not been started")
        missing = [t.partition for t in tasks if t.state is not TaskState.SUCCEEDED]
        if missing:
            raise NotFoundError(
                f"group {name!r} is not complete: partitions {missing[:10]} have not "
                "succeeded (see 'despina group status')"
            )
        parts = [
            (p, partition_context(name, t.partition, t.attempt))
            for t in sorted(tasks, key=lambda t: t.partition)
            for p in t.outputs
        ]
        tables = [
            pq.read_table(pa.BufferReader(self.read_output(p, context)))
            for p, context in parts
            if p.endswith(".parquet")
        ]
        if not tables:
            raise NotFoundError(f"group {name!r} wrote no Parquet rows; see its output {parts}")
        # Partitions infer their own types: a column all null in one is promoted to the
        # type the others give it.
        return pa.concat_tables(tables, promote_options="default")

    # ---- tasks ----------------------------------------------------------------------
    def list_tasks(
        self,
        group: str | None = None,
        state: TaskState | str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Task]:
        return self.store.list_tasks(group, state, limit, offset)

    def get_task(self, task_id: int) -> Task:
        return self.store.get_task(task_id)

    def task_events(self, task_id: int) -> list[dict[str, Any]]:
        self.store.get_task(task_id)
        return self.store.events(task_id)

    def cancel_task(self, task_id: int) -> Task:
        task = self.store.request_cancel(task_id)
        self._changed()
        return task

    def retry_task(self, task_id: int) -> Task:
        task = self.store.transition(
            task_id,
            TaskState.PENDING,
            manual_retry=True,
            reason="retried by user",
            not_before=None,
        )
        self._changed()
        return task

    def task_logs(self, task_id: int, offset: int = 0, limit: int | None = None) -> tuple[str, int]:
        """Log text from byte ``offset`` on (at most ``limit`` bytes of it), and the offset
        to continue from."""
        return read_log(Path(self.store.get_task(task_id).log_path), offset, limit)

    def log_to_now(self, task_id: int, offset: int = 0) -> tuple[Iterator[str], int]:
        """Log text from byte ``offset`` to what is written now, in pieces of at most
        :data:`LOG_CHUNK` bytes, and the offset to continue from."""
        path = Path(self.store.get_task(task_id).log_path)
        end = max(offset, path.stat().st_size if path.is_file() else offset)
        return log_pieces(path, offset, end), end

    def follow_logs(self, task_id: int, offset: int = 0, poll_s: float = 0.3) -> Iterator[str]:
        """Log text from byte ``offset`` as it is written, until the task reaches a
        terminal state, in pieces of at most :data:`LOG_CHUNK` bytes."""
        ended = False
        while True:
            text, offset = self.task_logs(task_id, offset, LOG_CHUNK)
            if text:
                yield text
                continue  # more may be waiting already
            if ended:  # read to the end once the task had ended: its last lines are in
                return
            ended = self.store.get_task(task_id).state.terminal
            if not ended:
                time.sleep(poll_s)


def _masked(group: TaskGroup) -> TaskGroup:
    return group.model_copy(update={"env": masked(group.env)})

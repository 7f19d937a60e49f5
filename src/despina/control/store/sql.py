"""The store: the one place control-plane state is read and written.

Clusters, groups and tasks are one module because every task query shares the
transition function and the row locks below; users and tokens (:mod:`.access`) and
deployments (:mod:`.deployments`) are mixins of their own, the engine is :mod:`.engine`.

Rules every caller may rely on:

- Safe to share between threads, and between processes on the same database: each call
  is one transaction; SQLite runs in WAL mode with ``BEGIN IMMEDIATE``, PostgreSQL locks
  the task row (``SELECT ... FOR UPDATE``) before changing its state.
- Reads return frozen snapshots (:mod:`despina.control.models`), never live rows.
- Every state change goes through :meth:`Store.transition`, which refuses illegal moves
  (:func:`despina.control.states.check_transition`), records an event, and commits before
  the caller acts on it. Terminal states never change, except by a user's retry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import exists, func, select, true, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, aliased, sessionmaker

from despina.control.models import (
    SERVE_JOB,
    Cluster,
    ClusterSpec,
    GroupSpec,
    Task,
    TaskGroup,
)
from despina.control.states import TaskState, check_transition
from despina.control.store.access import AccessStore
from despina.control.store.common import (
    aware,
    insert_row,
    pending_task_row,
    snapshot,
    spec_columns,
    utcnow,
)
from despina.control.store.deployments import DeploymentStore
from despina.control.store.engine import masked, migrate, open_engine
from despina.control.store.reviews import ReviewStore
from despina.control.store.tables import ClusterRow, DeploymentRow, EventRow, GroupRow, TaskRow
from despina.core.errors import ConfigError, ConflictError, NotFoundError, StateError

logger = logging.getLogger(__name__)


class Store(AccessStore, DeploymentStore, ReviewStore):
    """Clusters, task groups and tasks in one SQL database (see the module docstring)."""

    def __init__(
        self, url: str, *, migrate_schema: bool = True, activity_key: bytes | None = None
    ) -> None:
        self.url = url
        self.activity_key = activity_key
        self.engine = open_engine(url)
        if migrate_schema:
            try:
                migrate(self.engine)
            except OperationalError as exc:
                raise ConfigError(f"cannot open the store at {masked(url)}: {exc.orig}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(despina_write=True), expire_on_commit=False
        )

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        """One transaction; ``write`` ones take SQLite's write lock when they begin."""
        with (self._write_sessions if write else self._sessions).begin() as session:
            yield session

    # ---- clusters -------------------------------------------------------------------
    def create_cluster(self, spec: ClusterSpec) -> Cluster:
        row = ClusterRow(**spec_columns(spec, ClusterRow), created_at=utcnow())
        with self._session(write=True) as s:
            insert_row(
                s,
                row,
                f"a cluster named {spec.name!r} already exists; pick another "
                f"name or remove it with 'despina cluster rm {spec.name}'",
            )
            return _cluster(row)

    def get_cluster(self, name: str) -> Cluster:
        with self._session() as s:
            return _cluster(self._cluster_row(s, name))

    def list_clusters(self) -> list[Cluster]:
        with self._session() as s:
            return [_cluster(r) for r in s.scalars(select(ClusterRow).order_by(ClusterRow.id))]

    def delete_cluster(self, name: str) -> None:
        with self._session(write=True) as s:
            row = self._cluster_row(s, name)
            used = s.scalar(
                select(func.count()).select_from(GroupRow).where(GroupRow.cluster_id == row.id)
            )
            deployed = s.scalar(
                select(func.count())
                .select_from(DeploymentRow)
                .where(DeploymentRow.cluster_id == row.id)
            )
            if used or deployed:
                raise ConflictError(
                    f"cluster {name!r} still has {used} task group(s) and {deployed} "
                    "deployment(s); remove them first"
                )
            s.delete(row)

    def _cluster_row(self, s: Session, name: str) -> ClusterRow:
        row = s.scalar(select(ClusterRow).where(ClusterRow.name == name))
        if row is None:
            raise NotFoundError(
                f"no cluster named {name!r}; see 'despina cluster ls' or create it with "
                f"'despina cluster create {name}'"
            )
        return row

    # ---- groups ---------------------------------------------------------------------
    def create_group(self, spec: GroupSpec, output: str) -> TaskGroup:
        with self._session(write=True) as s:
            cluster = self._cluster_row(s, spec.cluster)
            row = GroupRow(
                **spec_columns(spec, GroupRow),
                cluster_id=cluster.id,
                output=output,
                created_at=utcnow(),
            )
            insert_row(
                s,
                row,
                f"a task group named {spec.name!r} already exists; pick another "
                f"name or remove it with 'despina group rm {spec.name}'",
            )
            return _group(row, cluster.name)

    def get_group(self, name: str) -> TaskGroup:
        with self._session() as s:
            row = self._group_row(s, name)
            return _group(row, self._cluster_name(s, row.cluster_id))

    def set_group_env(self, name: str, env: dict[str, str]) -> None:
        with self._session(write=True) as s:
            self._group_row(s, name).env = env

    def list_groups(self, cluster: str | None = None) -> list[TaskGroup]:
        with self._session() as s:
            q = select(GroupRow, ClusterRow.name).outerjoin(ClusterRow).order_by(GroupRow.id)
            if cluster is not None:
                q = q.where(ClusterRow.name == cluster)
            return [_group(g, c) for g, c in s.execute(q)]

    def delete_group(self, name: str) -> None:
        with self._session(write=True) as s:
            row = self._group_row(s, name)
            if row.job == SERVE_JOB:
                raise ConflictError(
                    f"group {name!r} is deployment {name!r}; remove it with "
                    f"'despina deployments rm {name}'"
                )
            active = s.scalar(
                select(func.count())
                .select_from(TaskRow)
                .where(TaskRow.group_id == row.id, TaskRow.state == TaskState.RUNNING.value)
            )
            if active:
                raise ConflictError(
                    f"group {name!r} has {active} running task(s); cancel them first"
                )
            s.delete(row)  # its tasks and their events go with it (ON DELETE CASCADE)

    def start_group(
        self, name: str, partitions: Sequence[dict[str, Any]], logs: Path
    ) -> list[Task]:
        """Create one PENDING task per partition and mark the group started (once only)."""
        with self._session(write=True) as s:
            row = self._group_row(s, name)
            if row.started_at is not None:
                raise ConflictError(
                    f"group {name!r} was already started; retry its failed tasks with "
                    f"'despina task retry ID' or create a new group"
                )
            now = utcnow()
            row.started_at = now
            rows = [
                pending_task_row(row.id, i, dict(p), logs / name / f"partition-{i:05d}.log", now)
                for i, p in enumerate(partitions)
            ]
            s.add_all(rows)
            s.flush()
            return [_task(r, name) for r in rows]

    def _group_row(self, s: Session, name: str) -> GroupRow:
        row = s.scalar(select(GroupRow).where(GroupRow.name == name))
        if row is None:
            raise NotFoundError(f"no task group named {name!r}; see 'despina group ls'")
        return row

    def _group_name(self, s: Session, group_id: int) -> str:
        return s.scalars(select(GroupRow.name).where(GroupRow.id == group_id)).one()

    def _cluster_name(self, s: Session, cluster_id: int | None) -> str | None:
        if cluster_id is None:
            return None  # a deployment the server hosts in its own process
        return s.scalars(select(ClusterRow.name).where(ClusterRow.id == cluster_id)).one()

    # ---- tasks ----------------------------------------------------------------------
    def get_task(self, task_id: int) -> Task:
        with self._session() as s:
            row = s.get(TaskRow, task_id)
            if row is None:
                raise NotFoundError(f"no task with id {task_id}; see 'despina task ls'")
            return _task(row, self._group_name(s, row.group_id))

    def task_spec(self, task_id: int) -> dict[str, Any]:
        """The partition a task covers (file list or row range), as stored at start."""
        with self._session() as s:
            row = s.get(TaskRow, task_id)
            if row is None:
                raise NotFoundError(f"no task with id {task_id}")
            return dict(row.spec)

    def list_tasks(
        self,
        group: str | None = None,
        state: TaskState | str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Task]:
        if group is not None:
            self.get_group(group)  # an unknown group is an error, not an empty list
        return self._tasks_where(
            true() if group is None else GroupRow.name == group,
            true() if state is None else TaskRow.state == _state(state).value,
            limit=limit,
            offset=offset,
        )

    def task_progress(self, group: str) -> tuple[int, int | None, datetime | None]:
        """A group's items done, its total (None while a task's is unknown) and its last
        task's end, in one aggregate query: a group of thousands of tasks costs no more."""
        with self._session() as s:
            gid = self._group_row(s, group).id
            n, done, total, known, last = s.execute(
                select(func.count(), func.coalesce(func.sum(TaskRow.done), 0),
                       func.sum(TaskRow.total), func.count(TaskRow.total),
                       func.max(TaskRow.ended_at)).where(TaskRow.group_id == gid)
            ).one()  # fmt: skip
        return int(done), (int(total or 0) if n and known == n else None), aware(last)

    def count_tasks(
        self, group: str | None = None, *, without_job: str | None = None
    ) -> dict[TaskState, int]:
        """Tasks per state, of one group or all; ``without_job``: leaving out the groups
        that run that job (deployments, which run until stopped)."""
        with self._session() as s:
            q = select(TaskRow.state, func.count()).group_by(TaskRow.state)
            if group is not None:
                q = q.where(TaskRow.group_id == self._group_row(s, group).id)
            if without_job is not None:
                jobs = select(GroupRow.id).where(GroupRow.job == without_job)
                q = q.where(TaskRow.group_id.not_in(jobs))
            counts = {TaskState(st): int(n) for st, n in s.execute(q)}
        return {st: counts.get(st, 0) for st in TaskState}

    def recent_events(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest state changes of any task, newest first, with its group's name."""
        with self._session() as s:
            rows = s.execute(
                select(EventRow, GroupRow.name)
                .join(TaskRow, TaskRow.id == EventRow.task_id)
                .join(GroupRow, GroupRow.id == TaskRow.group_id)
                .order_by(EventRow.id.desc())
                .limit(limit)
            ).all()
            return [{"task": e.task_id, "group": name, "at": aware(e.at), "to": e.to_state,
                     "attempt": e.attempt, "reason": e.reason} for e, name in rows]  # fmt: skip

    def events(self, task_id: int) -> list[dict[str, Any]]:
        with self._session() as s:
            rows = s.scalars(
                select(EventRow).where(EventRow.task_id == task_id).order_by(EventRow.id)
            )
            return [
                {
                    "at": aware(e.at),
                    "attempt": e.attempt,
                    "from": e.from_state,
                    "to": e.to_state,
                    "reason": e.reason,
                }
                for e in rows
            ]

    def transition(
        self,
        task_id: int,
        new: TaskState,
        *,
        reason: str | None = None,
        expect: TaskState | None = None,
        manual_retry: bool = False,
        **fields: Any,
    ) -> Task:
        """Move a task to ``new`` (and set ``fields``) in one transaction, or raise.

        ``expect``: refuse (StateError) unless the task is in this state now, so two
        schedulers cannot both claim one PENDING task.
        """
        with self._session(write=True) as s:
            row = self._locked_task(s, task_id)
            current = TaskState(row.state)
            if expect is not None and current is not expect:
                raise StateError(f"task {task_id} is {current.value}, not {expect.value}")
            return self._apply(s, row, new, reason, manual_retry, fields)

    def _locked_task(self, s: Session, task_id: int) -> TaskRow:
        row = s.scalar(select(TaskRow).where(TaskRow.id == task_id).with_for_update())
        if row is None:
            raise NotFoundError(f"no task with id {task_id}; see 'despina task ls'")
        return row

    def _apply(
        self,
        s: Session,
        row: TaskRow,
        new: TaskState,
        reason: str | None,
        manual_retry: bool = False,
        fields: dict[str, Any] | None = None,
    ) -> Task:
        """The one place a task's state changes: check, update, record the event."""
        current = TaskState(row.state)
        check_transition(current, new, manual_retry=manual_retry)
        now = utcnow()
        if new is TaskState.RUNNING:
            row.started_at, row.heartbeat_at, row.ended_at = now, now, None
            row.exit_reason = None
        elif new.terminal:
            row.ended_at = now
            row.exit_reason = reason
        elif new is TaskState.PENDING and current is not TaskState.RETRYING:
            row.attempt += 1  # a user's retry of a terminal task
            row.cancel_requested = False
            row.exit_reason = None
        elif new is TaskState.RETRYING:
            row.attempt += 1
            row.exit_reason = reason
        for key, value in (fields or {}).items():
            setattr(row, key, value)
        row.state = new.value
        if new in (TaskState.FAILED, TaskState.CANCELLED):
            self._cancel_later_stages(s, row, reason)
        s.add(
            EventRow(
                task_id=row.id,
                at=now,
                attempt=row.attempt,
                from_state=current.value,
                to_state=new.value,
                reason=reason,
            )
        )
        s.flush()
        return _task(row, self._group_name(s, row.group_id))

    def _cancel_later_stages(self, s: Session, row: TaskRow, reason: str | None) -> None:
        """A task that will not succeed leaves its group's later stages nothing to start
        from: their waiting tasks are cancelled, saying which task to retry first."""
        later = s.scalars(
            select(TaskRow).where(
                TaskRow.group_id == row.group_id,
                TaskRow.stage > row.stage,
                TaskRow.state.in_([TaskState.PENDING.value, TaskState.RETRYING.value]),
            )
        ).all()
        for task in later:
            if task.state == TaskState.CANCELLED.value:  # cancelled by an earlier one of these
                continue
            self._apply(s, task, TaskState.CANCELLED,
                        f"task {row.id} of stage {row.stage} did not succeed ({reason}); "
                        f"retry it, then this one")  # fmt: skip

    def _tasks_where(
        self, *conditions: Any, limit: int | None = None, offset: int = 0
    ) -> list[Task]:
        """Tasks (with their group's name) matching ``conditions``, oldest first."""
        with self._session() as s:
            q = select(TaskRow, GroupRow.name).join(GroupRow).where(*conditions)
            q = q.order_by(TaskRow.id).offset(offset).limit(limit)
            return [_task(t, g) for t, g in s.execute(q)]

    @staticmethod
    def _in_groups(groups: Sequence[str] | None) -> Any:
        return true() if groups is None else GroupRow.name.in_(list(groups))

    def claimable(self, groups: Sequence[str] | None, limit: int) -> list[Task]:
        """PENDING tasks of started groups whose backoff has passed and whose earlier
        stages have all succeeded, oldest first."""
        earlier = aliased(TaskRow)
        blocked = exists().where(
            earlier.group_id == TaskRow.group_id,
            earlier.stage < TaskRow.stage,
            earlier.state != TaskState.SUCCEEDED.value,
        )
        return self._tasks_where(
            TaskRow.state == TaskState.PENDING.value,
            TaskRow.not_before.is_(None) | (TaskRow.not_before <= utcnow()),
            TaskRow.cancel_requested.is_(False),
            ~blocked,
            self._in_groups(groups),
            limit=limit,
        )

    def due_retries(self, groups: Sequence[str] | None) -> list[Task]:
        """RETRYING tasks whose backoff has passed."""
        return self._tasks_where(
            TaskRow.state == TaskState.RETRYING.value,
            TaskRow.not_before.is_(None) | (TaskRow.not_before <= utcnow()),
            self._in_groups(groups),
        )

    def stale_running(self, older_than_s: float, exclude: Sequence[int] = ()) -> list[Task]:
        """RUNNING tasks whose heartbeat stopped: their scheduler or worker died."""
        return self._tasks_where(
            TaskRow.state == TaskState.RUNNING.value,
            TaskRow.heartbeat_at < utcnow() - timedelta(seconds=older_than_s),
            TaskRow.id.not_in(list(exclude)) if exclude else true(),
        )

    def cancel_requests(self) -> list[Task]:
        """RUNNING or PENDING tasks a user asked to cancel."""
        return self._tasks_where(
            TaskRow.cancel_requested.is_(True),
            TaskRow.state.in_([TaskState.RUNNING.value, TaskState.PENDING.value]),
        )

    def request_cancel(self, task_id: int) -> Task:
        """Cancel a task in one transaction: a RUNNING one is flagged for the scheduler
        that runs it to stop; any other moves to CANCELLED now (or is refused if terminal)."""
        with self._session(write=True) as s:
            row = self._locked_task(s, task_id)
            if row.state == TaskState.RUNNING.value:
                row.cancel_requested = True
                s.flush()
                return _task(row, self._group_name(s, row.group_id))
            return self._apply(s, row, TaskState.CANCELLED, "cancelled by user")

    def heartbeat(self, task_ids: Sequence[int]) -> None:
        if not task_ids:
            return
        with self._session(write=True) as s:
            s.execute(
                update(TaskRow)
                .where(TaskRow.id.in_(list(task_ids)))
                .where(TaskRow.state == TaskState.RUNNING.value)
                .values(heartbeat_at=utcnow())
            )

    def report_progress(self, task_id: int, done: int, total: int | None = None) -> None:
        values: dict[str, Any] = {"done": done, "heartbeat_at": utcnow()}
        if total is not None:
            values["total"] = total
        with self._session(write=True) as s:
            s.execute(
                update(TaskRow)
                .where(TaskRow.id == task_id, TaskRow.state == TaskState.RUNNING.value)
                .values(**values)
            )


def _state(value: TaskState | str) -> TaskState:
    try:
        return TaskState(str(value).upper())
    except ValueError:
        raise ConfigError(
            f"unknown task state {value!r}; one of {', '.join(s.value for s in TaskState)}"
        ) from None


def _cluster(row: ClusterRow) -> Cluster:
    return snapshot(Cluster, row)


def _group(row: GroupRow, cluster: str | None) -> TaskGroup:
    return snapshot(TaskGroup, row, cluster=cluster)


def _task(row: TaskRow, group: str) -> Task:
    return snapshot(
        Task, row, group=group, metrics=row.metrics or {}, outputs=list(row.outputs or [])
    )

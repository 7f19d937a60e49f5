"""The store's deployments: a model served under a name, hosted as a task of its own group.

Mixed into :class:`despina.control.store.Store`; the rules of the store's docstring apply.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import select, true
from sqlalchemy.orm import Session

from despina.control.models import SERVE_JOB, Deployment, DeploymentSpec, Resources
from despina.control.states import TaskState
from despina.control.store.common import insert_row, pending_task_row, snapshot, utcnow
from despina.control.store.tables import ClusterRow, DeploymentRow, GroupRow, TaskRow
from despina.core.errors import ConflictError, NotFoundError


class DeploymentStore:
    """Register, list and remove deployments, each with its ``serve`` group and task."""

    _session: Callable[..., AbstractContextManager[Session]]
    _cluster_row: Callable[[Session, str], ClusterRow]

    def create_deployment(self, spec: DeploymentSpec, logs: Path) -> Deployment:
        """Record the deployment with its task group (job ``serve``) and one PENDING task,
        which the server that hosts it claims (:class:`despina.serving.host.DeploymentHost`)."""
        with self._session(write=True) as s:
            cluster_id = None if spec.cluster is None else self._cluster_row(s, spec.cluster).id
            taken = (
                f"a deployment named {spec.name!r} already exists; pick another "
                f"name or remove it with 'despina deployments rm {spec.name}'"
            )
            # Checked first: its group of the same name would otherwise be the conflict.
            if s.scalar(select(DeploymentRow.id).where(DeploymentRow.name == spec.name)):
                raise ConflictError(taken)
            now = utcnow()
            group = GroupRow(
                name=spec.name,
                cluster_id=cluster_id,
                source=spec.model,
                job=SERVE_JOB,
                script=None,
                config={"extractor": spec.extractor, "replicas": spec.replicas},
                env={},
                partitions=1,
                resources=Resources().model_dump(),
                max_retries=0,
                timeout_s=None,
                output="",
                created_at=now,
                started_at=now,
            )
            insert_row(
                s,
                group,
                f"a task group named {spec.name!r} already exists, and a deployment's tasks "
                "live in a group of its name; pick another name",
            )
            task = pending_task_row(group.id, 0, {}, logs / spec.name / "deployment.log", now)
            s.add(task)
            row = DeploymentRow(
                name=spec.name,
                model=spec.model,
                extractor=spec.extractor,
                replicas=spec.replicas,
                cluster_id=cluster_id,
                group_id=group.id,
                created_at=now,
            )
            insert_row(s, row, taken)
            return _deployment(row, spec.cluster, task)

    def get_deployment(self, name: str) -> Deployment:
        found = self._deployments_where(DeploymentRow.name == name)
        if not found:
            raise _no_deployment(name)
        return found[0]

    def list_deployments(self) -> list[Deployment]:
        return self._deployments_where(true())

    def _deployments_where(self, condition: Any) -> list[Deployment]:
        """Deployments (with their cluster's name and their task, in one query)."""
        with self._session() as s:
            q = (
                select(DeploymentRow, ClusterRow.name, TaskRow)
                .outerjoin(ClusterRow, DeploymentRow.cluster_id == ClusterRow.id)
                .outerjoin(TaskRow, TaskRow.group_id == DeploymentRow.group_id)
                .where(condition)
                .order_by(DeploymentRow.id)
            )
            return [_deployment(d, c, t) for d, c, t in s.execute(q)]

    def delete_deployment(self, name: str) -> None:
        """Remove the deployment and its group; a server hosting it stops within seconds."""
        with self._session(write=True) as s:
            row = self._deployment_row(s, name)
            group = None if row.group_id is None else s.get(GroupRow, row.group_id)
            s.delete(row)
            s.flush()
            if group is not None:
                s.delete(group)  # its task and events go with it (ON DELETE CASCADE)

    def _deployment_row(self, s: Session, name: str) -> DeploymentRow:
        row = s.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
        if row is None:
            raise _no_deployment(name)
        return row


def _no_deployment(name: str) -> NotFoundError:
    return NotFoundError(f"no deployment named {name!r}; see 'despina deployments ls'")


_DEPLOYMENT_STATES = {
    TaskState.PENDING.value: "pending",
    TaskState.RETRYING.value: "pending",
    TaskState.RUNNING.value: "running",
    TaskState.FAILED.value: "failed",
    TaskState.CANCELLED.value: "stopped",
    TaskState.SUCCEEDED.value: "stopped",
}


def _deployment(row: DeploymentRow, cluster: str | None, task: TaskRow | None) -> Deployment:
    """A deployment's state is its task's: pending (or between servers), running,
    failed (to load), stopped (cancelled by a user)."""
    return snapshot(
        Deployment,
        row,
        cluster=cluster,
        state=_DEPLOYMENT_STATES[task.state] if task is not None else "failed",
        reason=None if task is None else task.exit_reason,
        task_id=None if task is None else task.id,
        attempt=1 if task is None else task.attempt,
    )

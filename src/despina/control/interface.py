"""The calls that the embedded :class:`ControlPlane` and :class:`HttpControlClient` share.

One interface, two implementations: the CLI (or a script) works the same against the
local store and against a server. Both return the same frozen snapshots
(:mod:`despina.control.models`) and raise the same :mod:`despina.core.errors`; one
contract suite (``tests/contracts/test_control_api.py``) runs against both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from despina.control.models import (
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


@runtime_checkable
class ControlAPI(Protocol):
    """Clusters, task groups, tasks and deployments."""

    def close(self) -> None: ...

    # clusters
    def create_cluster(self, spec: ClusterSpec) -> Cluster: ...
    def list_clusters(self) -> list[Cluster]: ...
    def get_cluster(self, name: str) -> Cluster: ...
    def delete_cluster(self, name: str) -> None: ...

    # task groups
    def create_group(self, spec: GroupSpec) -> TaskGroup: ...
    def get_group(self, name: str) -> TaskGroup:
        """The group, its env values shown as ``***`` (see :meth:`group_env`)."""
        ...

    def group_env(self, name: str) -> dict[str, str]:
        """The group's env in the clear: admins and the group's operators only."""
        ...

    def list_groups(self, cluster: str | None = None) -> list[TaskGroup]: ...
    def delete_group(self, name: str) -> None: ...
    def start_group(self, name: str, *, wait: bool = False) -> list[Task]:
        """Queue one task per partition; on a started group, the tasks not yet ended
        (a runner that died left them; the next scheduler recovers them). ``wait``: return
        once every task has ended."""
        ...

    def retry_failed(self, name: str) -> list[Task]:
        """Queue every FAILED or CANCELLED task of the group again; the tasks retried."""
        ...

    def group_status(self, name: str) -> GroupStatus: ...
    def group_result(self, name: str) -> pa.Table:
        """Every partition's rows, decrypted, in partition order."""
        ...

    # tasks
    def list_tasks(
        self,
        group: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Task]: ...
    def get_task(self, task_id: int) -> Task: ...
    def task_events(self, task_id: int) -> list[dict[str, Any]]: ...
    def cancel_task(self, task_id: int) -> Task: ...
    def retry_task(self, task_id: int) -> Task: ...
    def task_logs(self, task_id: int, offset: int = 0) -> tuple[str, int]: ...
    def follow_logs(self, task_id: int) -> Iterator[str]: ...

    # deployments
    def create_deployment(self, spec: DeploymentSpec) -> Deployment: ...
    def list_deployments(self) -> list[Deployment]: ...

    def list_reviews(self, group: str) -> list[Review]: ...
    def get_deployment(self, name: str) -> Deployment: ...
    def delete_deployment(self, name: str) -> None: ...

"""REST routes of clusters, task groups and tasks (who may call which: :data:`auth.POLICY`)."""

from __future__ import annotations

from typing import Annotated, Any

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Query
from fastapi import Path as FastPath
from fastapi.responses import Response, StreamingResponse

from despina.control.models import (
    Cluster,
    ClusterSpec,
    GroupSpec,
    GroupStatus,
    Review,
    Task,
    TaskGroup,
)
from despina.control.plane import ControlPlane

TaskId = Annotated[int, FastPath(ge=1, le=2**62)]
Offset = Annotated[int, Query(ge=0, le=2**62)]
PARQUET = "application/vnd.apache.parquet"


def control_router(plane: ControlPlane) -> APIRouter:
    """Clusters, task groups and tasks: the same calls as :class:`ControlPlane`."""
    router = APIRouter()

    # ---- clusters -------------------------------------------------------------------
    @router.post("/v1/clusters", status_code=201)
    def create_cluster(spec: ClusterSpec) -> Cluster:
        return plane.create_cluster(spec)

    @router.get("/v1/clusters")
    def list_clusters() -> list[Cluster]:
        return plane.list_clusters()

    @router.get("/v1/clusters/{name}")
    def get_cluster(name: str) -> Cluster:
        return plane.get_cluster(name)

    @router.delete("/v1/clusters/{name}", status_code=204)
    def delete_cluster(name: str) -> None:
        plane.delete_cluster(name)

    # ---- groups ---------------------------------------------------------------------
    @router.post("/v1/groups", status_code=201)
    def create_group(spec: GroupSpec) -> TaskGroup:
        return plane.create_group(spec)

    @router.get("/v1/groups")
    def list_groups(cluster: str | None = None) -> list[TaskGroup]:
        return plane.list_groups(cluster)

    @router.get("/v1/groups/{name}")
    def get_group(name: str) -> TaskGroup:
        return plane.get_group(name)

    @router.get("/v1/groups/{name}/reviews")
    def list_reviews(name: str) -> list[Review]:
        """Each sample's standing review in the console (an audit group's)."""
        return plane.list_reviews(name)

    @router.get("/v1/groups/{name}/env")
    def group_env(name: str) -> dict[str, str]:
        return plane.group_env(name)

    @router.delete("/v1/groups/{name}", status_code=204)
    def delete_group(name: str) -> None:
        plane.delete_group(name)

    @router.post("/v1/groups/{name}/start")
    def start_group(name: str) -> list[Task]:
        return plane.start_group(name)

    @router.get("/v1/groups/{name}/status")
    def group_status(name: str) -> GroupStatus:
        return plane.group_status(name)

    @router.post("/v1/groups/{name}/retry")
    def retry_failed(name: str) -> list[Task]:
        return plane.retry_failed(name)

    @router.get("/v1/groups/{name}/result", response_class=Response)
    def group_result(name: str) -> Response:
        """Every partition's rows, decrypted, as one Parquet file."""
        sink = pa.BufferOutputStream()
        pq.write_table(plane.group_result(name), sink)
        return Response(sink.getvalue().to_pybytes(), media_type=PARQUET)

    # ---- tasks ----------------------------------------------------------------------
    @router.get("/v1/tasks")
    def list_tasks(
        group: str | None = None,
        state: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        items = plane.list_tasks(group, state, limit, offset)
        return {"items": items, "limit": limit, "offset": offset}

    @router.get("/v1/tasks/{task_id}")
    def get_task(task_id: TaskId) -> dict[str, Any]:
        return {"task": plane.get_task(task_id), "events": plane.task_events(task_id)}

    @router.post("/v1/tasks/{task_id}/cancel")
    def cancel_task(task_id: TaskId) -> Task:
        return plane.cancel_task(task_id)

    @router.post("/v1/tasks/{task_id}/retry")
    def retry_task(task_id: TaskId) -> Task:
        return plane.retry_task(task_id)

    @router.get("/v1/tasks/{task_id}/logs", response_model=None)
    def task_logs(task_id: TaskId, offset: Offset = 0, follow: bool = False) -> Response:
        if not follow:  # what is written now, streamed in pieces
            pieces, end = plane.log_to_now(task_id, offset)
            return StreamingResponse(
                pieces, media_type="text/plain", headers={"X-Log-Offset": str(end)}
            )
        plane.get_task(task_id)  # 404 before the stream starts

        # A plain iterator: Starlette runs each step in its thread pool.
        return StreamingResponse(plane.follow_logs(task_id, offset), media_type="text/plain")

    return router

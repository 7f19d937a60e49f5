"""The control-plane REST API: clusters, groups and tasks, ``/health`` and ``/metrics``.

``create_app`` builds the FastAPI app around a :class:`ControlPlane`; with
``run_scheduler`` it also runs the scheduler in a background thread for as long as the
app lives, so ``despina server start`` is all a user needs. Despina's errors map to HTTP
codes in one handler (``DespinaError.http_status``) with ``{"error", "detail"}`` bodies.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

import despina
from despina.control.models import Cluster, ClusterSpec, GroupSpec, GroupStatus, Task, TaskGroup
from despina.control.plane import ControlPlane
from despina.control.scheduler import Scheduler
from despina.core.errors import DespinaError
from despina.serving.metrics import StoreCollector

logger = logging.getLogger(__name__)


def _scheduler_loop(scheduler: Scheduler) -> None:
    """Run steps until stopped; a failing step is logged and the loop goes on."""
    try:
        while not scheduler.stop_event.is_set():
            try:
                scheduler.step()
            except Exception:
                logger.exception("scheduler step failed; retrying in a second")
                scheduler.stop_event.wait(1.0)
    finally:
        scheduler.close()


def create_app(plane: ControlPlane, *, run_scheduler: bool = True) -> FastAPI:
    registry = CollectorRegistry()
    registry.register(StoreCollector(plane.store))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = thread = None
        if run_scheduler:
            scheduler = Scheduler(plane.store, plane.settings)
            thread = threading.Thread(
                target=_scheduler_loop, args=(scheduler,), name="despina-scheduler", daemon=True
            )
            thread.start()
        yield
        if scheduler is not None and thread is not None:
            scheduler.stop_event.set()
            thread.join(30)

    app = FastAPI(
        title="Despina control plane",
        version=despina.__version__,
        description="Clusters, task groups and tasks: create, start, watch, cancel, retry.",
        lifespan=lifespan,
    )

    @app.exception_handler(DespinaError)
    async def _despina_error(_: Request, exc: DespinaError) -> JSONResponse:
        return JSONResponse(
            {"error": type(exc).__name__, "detail": str(exc)}, status_code=exc.http_status
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return JSONResponse(
            {"error": "ConfigError", "detail": f"invalid {where}: {first['msg']}"},
            status_code=422,
        )

    @app.get("/health")
    def health() -> dict[str, Any]:
        plane.store.count_tasks()  # proves the database answers
        return {"status": "ok", "version": despina.__version__}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # ---- clusters -------------------------------------------------------------------
    @app.post("/v1/clusters", status_code=201)
    def create_cluster(spec: ClusterSpec) -> Cluster:
        return plane.create_cluster(spec)

    @app.get("/v1/clusters")
    def list_clusters() -> list[Cluster]:
        return plane.list_clusters()

    @app.get("/v1/clusters/{name}")
    def get_cluster(name: str) -> Cluster:
        return plane.get_cluster(name)

    @app.delete("/v1/clusters/{name}", status_code=204)
    def delete_cluster(name: str) -> None:
        plane.delete_cluster(name)

    # ---- groups ---------------------------------------------------------------------
    @app.post("/v1/groups", status_code=201)
    def create_group(spec: GroupSpec) -> TaskGroup:
        return plane.create_group(spec)

    @app.get("/v1/groups")
    def list_groups(cluster: str | None = None) -> list[TaskGroup]:
        return plane.list_groups(cluster)

    @app.get("/v1/groups/{name}")
    def get_group(name: str) -> TaskGroup:
        return plane.get_group(name)

    @app.delete("/v1/groups/{name}", status_code=204)
    def delete_group(name: str) -> None:
        plane.delete_group(name)

    @app.post("/v1/groups/{name}/start")
    def start_group(name: str) -> list[Task]:
        return plane.start_group(name)

    @app.get("/v1/groups/{name}/status")
    def group_status(name: str) -> GroupStatus:
        return plane.group_status(name)

    # ---- tasks ----------------------------------------------------------------------
    @app.get("/v1/tasks")
    def list_tasks(
        group: str | None = None,
        state: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        items = plane.list_tasks(group, state, limit, offset)
        return {"items": items, "limit": limit, "offset": offset}

    @app.get("/v1/tasks/{task_id}")
    def get_task(task_id: int) -> dict[str, Any]:
        return {"task": plane.get_task(task_id), "events": plane.task_events(task_id)}

    @app.post("/v1/tasks/{task_id}/cancel")
    def cancel_task(task_id: int) -> Task:
        return plane.cancel_task(task_id)

    @app.post("/v1/tasks/{task_id}/retry")
    def retry_task(task_id: int) -> Task:
        return plane.retry_task(task_id)

    @app.get("/v1/tasks/{task_id}/logs", response_model=None)
    def task_logs(
        task_id: int, offset: Annotated[int, Query(ge=0)] = 0, follow: bool = False
    ) -> Response:
        if not follow:
            text, end = plane.task_logs(task_id, offset)
            return PlainTextResponse(text, headers={"X-Log-Offset": str(end)})
        plane.get_task(task_id)  # 404 before the stream starts

        async def stream() -> AsyncIterator[str]:
            pos = offset
            while True:
                text, pos = await asyncio.to_thread(plane.task_logs, task_id, pos)
                if text:
                    yield text
                task = await asyncio.to_thread(plane.get_task, task_id)
                if task.state.terminal:
                    text, pos = await asyncio.to_thread(plane.task_logs, task_id, pos)
                    if text:
                        yield text
                    return
                await asyncio.sleep(0.3)

        return StreamingResponse(stream(), media_type="text/plain")

    return app

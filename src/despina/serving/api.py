"""The REST API: clusters, groups, tasks and deployments, ``/health``, ``/ready`` and
``/metrics``.

Every route but ``/health`` needs a token (:mod:`despina.serving.auth`).

``create_app`` builds the FastAPI app around a :class:`ControlPlane`; with
``run_scheduler`` it also runs the scheduler in a background thread for as long as the
app lives, so ``despina server start`` is all a user needs. It hosts the deployments
registered in the store (``despina deploy``); without a control plane it serves only the
deployments it is given (``despina serve``). Despina's errors map to HTTP codes in one
handler (``DespinaError.http_status``) with ``{"error", "detail"}`` bodies.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

import despina
from despina.control.plane import ControlPlane
from despina.control.scheduler import Scheduler
from despina.core.errors import ConfigError, DespinaError
from despina.serving.access_log import RequestId
from despina.serving.admin_routes import admin_router
from despina.serving.auth import Authenticator, AuthGuard
from despina.serving.control_routes import control_router
from despina.serving.deploy_routes import deployment_router
from despina.serving.errors import error_response
from despina.serving.host import DeploymentHost
from despina.serving.metrics import ServingMetrics, StoreCollector
from despina.serving.settings import AuthSettings, ServeOneSettings, ServingSettings
from despina.serving.uploads import BodyLimit

logger = logging.getLogger(__name__)

# Bounded so a huge number is a 422, not an integer overflow inside the database.


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


def _sync_loop(
    host: DeploymentHost, stop: threading.Event, wake: threading.Event, every_s: float = 2.0
) -> None:
    """Keep the hosted deployments in step with the store: every ``every_s`` (heartbeats,
    and what other processes changed), and at once when this server's plane changed
    something (a deployment's task cancelled or retried through the API)."""
    while not stop.is_set():
        wake.wait(every_s)
        wake.clear()
        if stop.is_set():
            return
        try:
            host.sync()
        except Exception:
            logger.exception("deployment sync failed; retrying")


def freeze_startup_heap() -> None:
    """Exempt what exists after startup (modules, the app, a ``despina serve`` model) from
    the garbage collector's full passes, which otherwise walk it every few seconds under
    load, pausing the server for tens of milliseconds (the tail latency at concurrency 32
    in docs/benchmarks.md, serving). Garbage is collected first, so nothing dead is
    frozen; objects freed later by reference counting are freed as before."""
    gc.collect()
    gc.freeze()


def create_app(
    plane: ControlPlane | None,
    *,
    run_scheduler: bool = True,
    serving: ServingSettings | None = None,
    host: DeploymentHost | None = None,
    auth: Authenticator | None = None,
) -> FastAPI:
    """The app; ``auth`` checks tokens against the plane's store unless given, and is
    required without a plane unless ``DESPINA_AUTH=off``."""
    auth_settings = auth.settings if auth is not None else AuthSettings.from_env()
    if auth is None and auth_settings.enabled:
        if plane is None:
            raise ConfigError("an app without a control plane needs an Authenticator")
        auth = Authenticator(plane.store, auth_settings)
    if not auth_settings.enabled:
        auth = None
        logger.warning(
            "authentication is OFF (DESPINA_AUTH=off): anyone who reaches this "
            "server can use every route"
        )
    registry = CollectorRegistry()
    if plane is not None:
        registry.register(StoreCollector(plane.store))
    settings = serving or ServingSettings.from_env()
    host = host or DeploymentHost(settings, plane)
    metrics = ServingMetrics(registry, host.snapshot)
    host.set_observer(metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        threads = []
        if plane is not None and run_scheduler:
            scheduler = Scheduler(plane.store, plane.settings)
            plane.on_change(scheduler.wake)
            stop = scheduler.stop_event
            threads.append(
                threading.Thread(
                    target=_scheduler_loop, args=(scheduler,), name="despina-scheduler", daemon=True
                )
            )
        wake = host.wake
        if plane is not None:
            # Deployments load in the background (Ray Serve replicas can take a while):
            # the server answers at once, /ready says when they are up, and a request
            # for one still loading gets 503 with Retry-After.
            wake.set()
            plane.on_change(wake.set)
            threads.append(
                threading.Thread(
                    target=_sync_loop,
                    args=(host, stop, wake),
                    name="despina-deployments",
                    daemon=True,
                )
            )
        for t in threads:
            t.start()
        freeze_startup_heap()
        yield
        stop.set()
        wake.set()
        for t in threads:
            t.join(30)
        host.close()

    app = FastAPI(
        title="Despina",
        version=despina.__version__,
        description="Clusters, task groups and tasks; deployments that classify uploaded "
        "images and flag bad input.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    if auth is not None:
        app.add_middleware(
            AuthGuard,
            auth=auth,
            resolve_task_group=(lambda i: plane.get_task(i).group) if plane else None,
        )
        _add_routes(app, admin_router(auth))
    app.add_middleware(RequestId)
    _add_routes(app, deployment_router(host, metrics))

    @app.exception_handler(DespinaError)
    async def _despina_error(_: Request, exc: DespinaError) -> JSONResponse:
        return error_response(exc)

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
        if plane is not None:
            plane.store.count_tasks()  # proves the database answers
        return {"status": "ok", "version": despina.__version__}

    @app.get("/ready")
    def ready() -> JSONResponse:
        """200 once every deployment this server hosts has loaded; 503 before or if one
        failed (with the reasons), so a load balancer sends no traffic too early. A
        deployment a user stopped (``despina task cancel``) is not waited for."""
        waiting = [d for d in host.listing() if d["state"] not in ("running", "stopped")]
        body = {"ready": not waiting, "deployments": len(host.snapshot()), "waiting": waiting}
        return JSONResponse(body, status_code=200 if not waiting else 503)

    @app.get("/metrics")
    def metrics_route() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if plane is not None:
        _add_routes(app, control_router(plane))
    if auth is not None:  # the console signs people in: it needs authentication on
        from despina.serving.console import console_router, signin_router
        from despina.serving.console_audits import audits_router
        from despina.serving.console_deployments import deployments_router, served_router
        from despina.serving.console_studies import studies_router

        _add_routes(app, signin_router(auth))
        _add_routes(app, deployments_router(host, registry))
        app.state.control_plane = plane is not None
        if plane is not None:
            _add_routes(app, console_router(plane))
            _add_routes(app, audits_router(plane))
            _add_routes(app, studies_router(plane))
        else:  # despina serve: its one model's page
            _add_routes(app, served_router(host))
    if auth is not None:
        _document_bearer(app)
    return app


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes, flat on the app (``include_router`` now wraps them in one
    opaque entry; the auth guard and the route matrix test match each route itself)."""
    app.router.routes.extend(router.routes)


def _document_bearer(app: FastAPI) -> None:
    """State in the OpenAPI spec that every operation but the open ones needs a Bearer
    token, so generated clients (and schemathesis) send it."""
    from fastapi.openapi.utils import get_openapi

    from despina.serving.auth import OPEN_ROUTES

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a Despina token"}
            }
            schema["security"] = [{"bearer": []}]
            for method, path in OPEN_ROUTES:
                op = schema["paths"].get(path, {}).get(method.lower())
                if op is not None:
                    op["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def serve_from_env() -> FastAPI:
    """The app of ``despina serve``, built in each worker process from the environment
    the CLI sets (``DESPINA_SERVE_MODEL``, ``_NAME``, ``_EXTRACTOR``)."""
    from despina.control.settings import ControlSettings
    from despina.control.store import Store
    from despina.security.chain import load_activity_key
    from despina.security.process import harden_process

    harden_process()
    settings = ServingSettings.from_env()
    host = DeploymentHost(settings)
    one = ServeOneSettings.from_env()
    host.add(one.name, str(one.model), one.extractor)
    auth_settings = AuthSettings.from_env()
    auth = None
    if auth_settings.enabled:  # tokens live in the same store as the server's
        control = ControlSettings.from_env()
        key = load_activity_key(control.activity_key_file)
        auth = Authenticator(Store(control.database_url, activity_key=key), auth_settings)
    return create_app(None, serving=settings, host=host, auth=auth)

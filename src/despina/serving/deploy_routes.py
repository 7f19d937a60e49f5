"""Routes of the deployments: register, list, predict one or several images, drift."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from despina.control.models import Deployment as DeploymentRecord
from despina.control.models import DeploymentSpec
from despina.core.errors import ConfigError, DespinaError, InputError
from despina.serving.host import DeploymentHost
from despina.serving.metrics import ServingMetrics
from despina.serving.uploads import read_uploads


def _upload_body(field: str, many: bool) -> dict[str, Any]:
    """OpenAPI for a multipart body (the routes parse it themselves, to give 413/415)."""
    schema: dict[str, Any] = {"type": "string", "format": "binary"}
    if many:
        schema = {"type": "array", "items": schema}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {field: schema},
                        "required": [field],
                    }
                }
            },
        }
    }


async def _json_body(request: Request) -> Any:
    import json

    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InputError(f"the request body is not valid JSON: {exc}") from None


def deployment_router(host: DeploymentHost, metrics: ServingMetrics) -> APIRouter:
    router = APIRouter(prefix="/v1/deployments", tags=["deployments"])

    @router.get("")
    def list_deployments() -> list[dict[str, Any]]:
        host.sync()
        return host.listing()

    @router.post("", status_code=201)
    async def create_deployment(spec: DeploymentSpec) -> DeploymentRecord:
        if host.plane is None:
            raise ConfigError("this server serves one model (despina serve); it takes no more")
        record = await run_in_threadpool(host.plane.create_deployment, spec)
        await run_in_threadpool(host.sync)
        return host.plane.get_deployment(record.name)

    @router.delete("/{name}", status_code=204)
    async def delete_deployment(name: str) -> None:
        if host.plane is None:
            raise ConfigError("this server's deployment cannot be removed; stop the server")
        await run_in_threadpool(host.plane.delete_deployment, name)
        await run_in_threadpool(host.sync)

    @router.get("/{name}")
    def get_deployment(name: str) -> dict[str, Any]:
        return host.get(name).describe()

    @router.post(
        "/{name}/predict", openapi_extra=_upload_body("file", False), response_class=JSONResponse
    )
    async def predict(name: str, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        status = "500"
        try:
            dep = host.get(name)
            if request.headers.get("content-type", "").startswith("application/json"):
                answer = await dep.predict_records(await _json_body(request))
            else:
                [(filename, data)] = await read_uploads(request, "file", many=False)
                answer = await dep.predict(data, filename)
            status = "200"
            answer["request_id"] = request.scope.get("state", {}).get("request_id")
            # The answer is plain JSON types already: skip FastAPI's re-encoding pass.
            return JSONResponse(answer)
        except DespinaError as exc:
            status = str(exc.http_status)
            raise
        finally:
            metrics.requests.labels(name, status).inc()
            if status == "200":
                metrics.latency.labels(name).observe(time.perf_counter() - t0)

    @router.post("/{name}/predict-batch", openapi_extra=_upload_body("files", True))
    async def predict_batch(name: str, request: Request) -> dict[str, Any]:
        """Each file gets its own answer, or its own error: one bad file loses no others."""
        dep = host.get(name)
        uploads = await read_uploads(request, "files", many=True)

        async def one(filename: str, data: bytes) -> dict[str, Any]:
            try:
                return {"file": filename, **await dep.predict(data, filename)}
            except DespinaError as exc:
                return {
                    "file": filename,
                    "error": type(exc).__name__,
                    "detail": str(exc),
                    "status": exc.http_status,
                }

        # Concurrently, so the files of one request share micro-batches.
        return {"results": list(await asyncio.gather(*(one(f, d) for f, d in uploads)))}

    @router.get("/{name}/drift")
    def drift(name: str) -> dict[str, Any]:
        return {"deployment": name, **host.get(name).drift.report()}

    return router

"""``despina deploy``, ``despina deployments`` and ``despina serve``: models behind HTTP."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from despina.cli.common import (
    SERVER_LOOP,
    AsJson,
    Server,
    client_for,
    console,
    err,
    handled,
    print_listing,
)
from despina.cli.server import bootstrap_admin
from despina.control.models import DeploymentSpec

deployments_app = typer.Typer(
    help="Deployments: models served by the server (register with 'despina deploy').",
    no_args_is_help=True,
)


@handled
def deploy(
    model_dir: Annotated[Path, typer.Argument(help="a model folder written by audit or train")],
    name: Annotated[str, typer.Option("--name", help="deployment name (in the URL)")],
    extractor: Annotated[
        str,
        typer.Option(help="whole, contours, cascade:NAME (e.g. cascade:frontalface) or learned"),
    ] = "whole",
    replicas: Annotated[int, typer.Option(help="Ray Serve replicas (ray clusters)")] = 1,
    cluster: Annotated[str | None, typer.Option(help="cluster (default: in the server)")] = None,
    server: Server = None,
) -> None:
    """Register a deployment; the server (despina server start) hosts it."""
    spec = DeploymentSpec(
        name=name, model=str(model_dir), extractor=extractor, replicas=replicas, cluster=cluster
    )
    d = client_for(server).create_deployment(spec)
    where = f"cluster {d.cluster}" if d.cluster else "the server"
    console.print(
        f"deployment {d.name} ({d.extractor}) registered on {where}: "
        f"POST /v1/deployments/{d.name}/predict; it runs as task {d.task_id} "
        f"('despina task logs {d.task_id}'; 'despina task cancel {d.task_id}' stops it)"
    )


@deployments_app.command("ls")
@handled
def deployments_ls(as_json: AsJson = False, server: Server = None) -> None:
    """List deployments with their state."""
    print_listing(
        client_for(server).list_deployments(),
        as_json,
        ("name", "model", "version", "extractor", "replicas", "cluster", "task", "state"),
        lambda d: (
            d.name,
            d.model,
            d.version or "-",
            d.extractor,
            str(d.replicas),
            d.cluster or "-",
            str(d.task_id or "-"),
            d.state + (f" ({d.reason})" if d.reason else ""),
        ),
    )


@deployments_app.command("rm")
@handled
def deployments_rm(name: str, server: Server = None) -> None:
    """Remove a deployment (the server stops serving it within seconds)."""
    client_for(server).delete_deployment(name)
    console.print(f"deployment {name} removed")


@handled
def serve(
    model_dir: Annotated[Path, typer.Argument(help="a model folder written by audit or train")],
    port: Annotated[int, typer.Option(help="TCP port")] = 8700,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    extractor: Annotated[
        str, typer.Option(help="whole, contours, cascade:NAME or learned")
    ] = "whole",
    batch: Annotated[int, typer.Option(help="max rows per model call (1: no batching)")] = 32,
    workers: Annotated[
        int, typer.Option(help="server processes, each with the model and its own batcher")
    ] = 1,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads per model call")] = 1,
    model_workers: Annotated[
        int, typer.Option(help="model calls that may run at once in each process")
    ] = 1,
) -> None:
    """Serve one model folder for a quick try (named after the folder); no store needed."""

    import uvicorn

    from despina.jobs.model_folder import check_extractor, check_model_folder
    from despina.serving.access_log import configure_json_logging
    from despina.serving.settings import AuthSettings, ServeOneSettings, proxy_options
    from despina.serving.workers import run_workers

    folder = check_model_folder(model_dir)
    check_extractor(extractor, folder)
    if AuthSettings.from_env().enabled:
        bootstrap_admin(client_for(None).store)  # tokens live in the store under DESPINA_HOME
    name = folder.name if folder.name != "model" else folder.parent.name or "model"
    name = re.sub(r"[^a-z0-9_.-]", "-", name.lower())[:63].lstrip("-._") or "model"
    os.environ.update(ServeOneSettings(model=folder, name=name, extractor=extractor).to_env())
    os.environ.update(
        DESPINA_MAX_BATCH=str(batch),
        DESPINA_INFERENCE_THREADS=str(threads),
        DESPINA_MODEL_WORKERS=str(model_workers),
    )
    err.print(
        f"serving {folder} as {name!r} on http://{host}:{port}/v1/deployments/{name}/predict"
        f" ({workers} process{'es' if workers > 1 else ''})"
    )
    configure_json_logging()
    options: dict[str, Any] = {
        **proxy_options(),
        "app": "despina.serving.api:serve_from_env",
        "factory": True,
        "log_level": "warning",
        "access_log": False,
        "loop": SERVER_LOOP,
    }
    if workers > 1:  # a listening socket per process: connections spread evenly
        run_workers(workers, host, port, **options)
    else:
        uvicorn.run(host=host, port=port, **options)

"""``despina server|cluster|group|task``: the control plane from the command line.

Every command works on the embedded store (``DESPINA_HOME``) or, with ``--server URL``
(or ``DESPINA_SERVER``), through a running ``despina server start``. Errors print one line
and exit non-zero (the code of the error class, see ``despina.core.errors``).
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from despina.control.client import HttpControlClient
from despina.control.models import ClusterSpec, DeploymentSpec, GroupSpec, Resources, Task
from despina.control.plane import ControlPlane
from despina.core.config import env_flag
from despina.core.errors import ConfigError, DespinaError

console = Console()
err = Console(stderr=True)

server_app = typer.Typer(
    help="Run the control-plane server (REST API + scheduler).", no_args_is_help=True
)
cluster_app = typer.Typer(
    help="Clusters: where tasks run (local processes or Ray).", no_args_is_help=True
)
config_app = typer.Typer(help="Write Ray cluster-launcher configs.", no_args_is_help=True)
group_app = typer.Typer(
    help="Task groups: what to run, on which data, in how many partitions.", no_args_is_help=True
)
task_app = typer.Typer(help="Tasks: one partition of a group each.", no_args_is_help=True)
deployments_app = typer.Typer(
    help="Deployments: models served by the server (register with 'despina deploy').",
    no_args_is_help=True,
)
cluster_app.add_typer(config_app, name="config")

Server = Annotated[
    str | None,
    typer.Option("--server", envvar="DESPINA_SERVER", help="server URL (default: local store)"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]
#: The event loop both servers run on: the standard library's, not uvloop. Under uvloop,
#: `despina serve` on a cheap model at concurrency 32 left some requests unanswered for
#: over a second although the app had answered them within 0.25 s (p99 10x p50 in
#: benchmarks/serving.py); on the asyncio loop the slowest stayed under 0.41 s at the same
#: throughput, and a ResNet-18-sized model served as many requests (2026-12-02, a
#: development script alternating the two loops).
SERVER_LOOP = "asyncio"
F = TypeVar("F", bound=Callable[..., Any])


def handled(fn: F) -> F:
    """Turn Despina and validation errors into one line on stderr and an exit code, and
    close the clients the command opened."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DespinaError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            msg = str(first["msg"]).removeprefix("Value error, ")
            where = ".".join(str(p) for p in first["loc"])
            text = f"invalid {where}: {msg}" if where else msg
            err.print(f"[bold red]error:[/] {text}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        finally:
            while _open:
                _open.pop().close()

    return wrapper  # type: ignore[return-value]


_open: list[Any] = []


def _client(server: str | None) -> Any:
    """The server's client, or the embedded control plane; closed when the command ends."""
    client = HttpControlClient(server) if server else ControlPlane()
    _open.append(client)
    return client


def _json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


# ---- server ---------------------------------------------------------------------------
@server_app.command("start")
@handled
def server_start(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8600,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate (chain): serve HTTPS")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key")] = None,
) -> None:
    """Serve the REST API and run the scheduler until interrupted.

    The first start on an empty store creates user 'admin' and prints its token once
    (or takes DESPINA_ADMIN_TOKEN), and creates the master key that encrypts artifacts.
    """
    import uvicorn

    from despina.security.process import harden_process
    from despina.serving.access_log import configure_json_logging
    from despina.serving.api import create_app

    tls = _tls_options(tls_cert, tls_key)
    harden_process()  # secrets in memory and environment: no /proc reads, no core dumps
    plane = _client(None)
    _bootstrap(plane.store)
    if plane.settings.encrypt:
        _ = plane.keyring  # created (0600) on the first start
    scheme = "https" if tls else "http"
    _warn_if_exposed(host, tls)
    err.print(f"Despina server on {scheme}://{host}:{port} (store: {_safe_url(plane)})")
    configure_json_logging()
    uvicorn.run(
        create_app(plane),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        loop=SERVER_LOOP,
        ssl_certfile=tls.get("ssl_certfile"),
        ssl_keyfile=tls.get("ssl_keyfile"),
        timeout_graceful_shutdown=10,
    )


def _tls_options(cert: Path | None, key: Path | None) -> dict[str, str]:
    if (cert is None) != (key is None):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    if cert is None or key is None:
        return {}
    for p in (cert, key):
        if not p.is_file():
            raise ConfigError(f"{p} does not exist")
    from despina.security.envelope import check_private

    check_private(key)
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def _warn_if_exposed(host: str, tls: dict[str, str]) -> None:
    if host not in ("127.0.0.1", "localhost", "::1") and not tls:
        err.print(
            f"[yellow]warning:[/] listening on {host} without TLS: tokens cross the network "
            "in clear text; pass --tls-cert/--tls-key or put a TLS proxy in front"
        )


def _safe_url(plane: Any) -> str:
    """The store's URL without its password (it would land in logs and terminals)."""
    from sqlalchemy.engine import make_url

    return str(make_url(plane.settings.database_url).render_as_string(hide_password=True))


def _bootstrap(store: Any) -> None:
    """An empty store gets user 'admin' with a token, printed once (or DESPINA_ADMIN_TOKEN)."""
    import os

    from despina.security.tokens import check_given_token

    given = os.environ.get("DESPINA_ADMIN_TOKEN")
    token = store.bootstrap_admin(check_given_token(given) if given else None)
    if token is None:
        return
    store.record_activity("server", "bootstrap", "user admin", "ok")
    if given:
        err.print("created user 'admin' with the token in DESPINA_ADMIN_TOKEN")
    else:
        err.print(
            "created user 'admin'; its token is shown [bold]once[/] (save it, e.g. "
            "despina login; send it as 'Authorization: Bearer TOKEN'):\n"
            f"  {token}",
            highlight=False,
            soft_wrap=True,
        )


# ---- deployments ----------------------------------------------------------------------
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
    d = _client(server).create_deployment(spec)
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
    client = _client(server)
    rows = [
        d if isinstance(d, dict) else d.model_dump(mode="json") for d in client.list_deployments()
    ]
    if as_json:
        _json(rows)
        return
    table = Table("name", "model", "extractor", "replicas", "cluster", "task", "state")
    for d in rows:
        state = d["state"] + (f" ({d['reason']})" if d.get("reason") else "")
        table.add_row(
            d["name"],
            d["model"],
            d["extractor"],
            str(d["replicas"]),
            d["cluster"] or "-",
            str(d.get("task_id") or "-"),
            state,
        )
    console.print(table)


@deployments_app.command("rm")
@handled
def deployments_rm(name: str, server: Server = None) -> None:
    """Remove a deployment (the server stops serving it within seconds)."""
    _client(server).delete_deployment(name)
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
    import os

    import uvicorn

    from despina.jobs.model_folder import check_extractor, check_model_folder
    from despina.serving.access_log import configure_json_logging
    from despina.serving.workers import run_workers

    folder = check_model_folder(model_dir)
    check_extractor(extractor, folder)
    if env_flag("DESPINA_AUTH", True):
        _bootstrap(_client(None).store)  # tokens live in the store under DESPINA_HOME
    name = folder.name if folder.name != "model" else folder.parent.name or "model"
    name = re.sub(r"[^a-z0-9_.-]", "-", name.lower())[:63].lstrip("-._") or "model"
    os.environ.update(
        DESPINA_SERVE_MODEL=str(folder),
        DESPINA_SERVE_NAME=name,
        DESPINA_SERVE_EXTRACTOR=extractor,
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


# ---- clusters -------------------------------------------------------------------------
@cluster_app.command("create")
@handled
def cluster_create(
    name: str,
    backend: Annotated[str, typer.Option(help="local or ray")] = "local",
    workers: Annotated[int, typer.Option(help="tasks at the same time")] = 2,
    address: Annotated[str | None, typer.Option(help="Ray head address, or auto")] = None,
    cpus: Annotated[float, typer.Option(help="CPU cores of the cluster")] = 2.0,
    memory_gb: Annotated[float | None, typer.Option(help="memory in GiB")] = None,
    gpus: Annotated[float, typer.Option(help="GPUs")] = 0.0,
    server: Server = None,
) -> None:
    """Register a cluster."""
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend must be local or ray, not {backend!r}")
    spec = ClusterSpec(
        name=name,
        backend=backend,
        address=address,
        workers=workers,
        resources=Resources(cpus=cpus, memory_gb=memory_gb, gpus=gpus),
    )
    c = _client(server).create_cluster(spec)
    console.print(f"cluster {c.name} ({c.backend}, {c.workers} workers) created")


@cluster_app.command("ls")
@handled
def cluster_ls(as_json: AsJson = False, server: Server = None) -> None:
    """List clusters."""
    clusters = _client(server).list_clusters()
    if as_json:
        _json([c.model_dump(mode="json") for c in clusters])
        return
    table = Table("name", "backend", "address", "workers", "cpus")
    for c in clusters:
        table.add_row(c.name, c.backend, c.address or "", str(c.workers), f"{c.resources.cpus:g}")
    console.print(table)


@cluster_app.command("rm")
@handled
def cluster_rm(name: str, server: Server = None) -> None:
    """Remove a cluster that no task group uses."""
    _client(server).delete_cluster(name)
    console.print(f"cluster {name} removed")


@config_app.command("aws")
@handled
def cluster_config_aws(
    name: Annotated[str, typer.Option("--name", help="cluster name")] = "despina",
    instance_type: Annotated[str, typer.Option(help="EC2 instance type")] = "m5.xlarge",
    min_workers: Annotated[int, typer.Option(help="workers kept up")] = 0,
    max_workers: Annotated[int, typer.Option(help="workers at most")] = 8,
    region: Annotated[str, typer.Option(help="AWS region")] = "us-east-1",
    subnet_id: Annotated[str | None, typer.Option(help="subnet for the nodes")] = None,
    security_group_id: Annotated[str | None, typer.Option(help="security group")] = None,
    image_id: Annotated[str | None, typer.Option(help="AMI (default: Ray's)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="file (default: stdout)")] = None,
) -> None:
    """Write a Ray cluster-launcher YAML for AWS (use it with 'ray up FILE')."""
    from despina.control.launcher import AwsClusterConfig, aws_config

    cfg = aws_config(
        AwsClusterConfig(
            cluster_name=name,
            instance_type=instance_type,
            min_workers=min_workers,
            max_workers=max_workers,
            region=region,
            subnet_id=subnet_id,
            security_group_id=security_group_id,
            image_id=image_id,
        )
    )
    text = yaml.safe_dump(cfg, sort_keys=False)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text)
        err.print(f"wrote {out}; launch it with: ray up {out}")


# ---- groups ---------------------------------------------------------------------------
def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"config file {path} is not valid YAML/JSON{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options")
    return data


def _parse_env(pairs: list[str] | None) -> dict[str, str]:
    env = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env takes KEY=VALUE, not {pair!r}")
        env[key] = value
    return env


@group_app.command("create")
@handled
def group_create(
    name: str,
    cluster: Annotated[str, typer.Option(help="cluster to run on")],
    source: Annotated[str, typer.Option(help="folder, file, fashion-mnist:DIR or s3://...")],
    job: Annotated[str | None, typer.Option(help="preprocess, audit, train or predict")] = None,
    config: Annotated[Path | None, typer.Option(help="the job's YAML/JSON config")] = None,
    script: Annotated[Path | None, typer.Option(help="a .py defining process() or main()")] = None,
    partitions: Annotated[int, typer.Option(help="tasks to split the source into")] = 1,
    cpus: Annotated[float, typer.Option(help="CPUs per task")] = 1.0,
    memory_gb: Annotated[float | None, typer.Option(help="memory per task, GiB")] = None,
    gpus: Annotated[float, typer.Option(help="GPUs per task")] = 0.0,
    max_retries: Annotated[int, typer.Option(help="retries of a failed task")] = 2,
    timeout: Annotated[float | None, typer.Option(help="seconds before a task is killed")] = None,
    env: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable")] = None,
    server: Server = None,
) -> None:
    """Define a task group (nothing runs until 'despina group start')."""
    spec = GroupSpec(
        name=name,
        cluster=cluster,
        source=source,
        job=job,
        script=str(script.expanduser().resolve()) if script else None,
        config=_read_config(config),
        env=_parse_env(env),
        partitions=partitions,
        resources=Resources(cpus=cpus, memory_gb=memory_gb, gpus=gpus),
        max_retries=max_retries,
        timeout_s=timeout,
    )
    g = _client(server).create_group(spec)
    console.print(f"group {g.name} created on {g.cluster}; output: {g.output}")


@group_app.command("start")
@handled
def group_start(
    name: str,
    wait: Annotated[bool, typer.Option(help="run here until every task ends")] = False,
    server: Server = None,
) -> None:
    """Split the source into partitions and start one task each."""
    client = _client(server)
    if wait and server is None:
        tasks = client.start_group(name, wait=True)
        group_status(name, as_json=False, server=None)
        if any(t.state.value != "SUCCEEDED" for t in tasks):
            raise typer.Exit(1)
        return
    tasks = client.start_group(name)
    if server is None:
        pid = client.spawn_runner([name])
        console.print(f"group {name}: {len(tasks)} task(s) started (runner pid {pid})")
    else:
        console.print(f"group {name}: {len(tasks)} task(s) started on the server")
    console.print(f"follow them with: despina task watch --group {name}")


@group_app.command("status")
@handled
def group_status(name: str, as_json: AsJson = False, server: Server = None) -> None:
    """The group's state, task counts, throughput and output location."""
    st = _client(server).group_status(name)
    if as_json:
        _json(st.model_dump(mode="json"))
        return
    counts = ", ".join(f"{k.lower()} {v}" for k, v in st.counts.items() if v)
    rate = f"{st.items_per_second:,.0f} items/s" if st.items_per_second else "-"
    where = st.cluster or "the server"
    console.print(
        f"[bold]{st.name}[/] on {where}: [bold]{st.state}[/] ({counts or 'no tasks'}); "
        f"{st.done:,}/{st.total if st.total is not None else '?'} items, {rate}; "
        f"output {st.output or '-'}",
        highlight=False,
    )


@group_app.command("ls")
@handled
def group_ls(as_json: AsJson = False, server: Server = None) -> None:
    """List task groups."""
    client = _client(server)
    groups = client.list_groups()
    if as_json:
        _json([g.model_dump(mode="json") for g in groups])
        return
    table = Table("name", "cluster", "what", "source", "partitions", "state")
    for g in groups:
        state = client.group_status(g.name).state
        table.add_row(
            g.name,
            g.cluster or "(server)",
            g.job or Path(g.script or "").name,
            g.source,
            str(g.partitions),
            state,
        )
    console.print(table)


@group_app.command("rm")
@handled
def group_rm(name: str, server: Server = None) -> None:
    """Remove a group and its tasks (its output files stay)."""
    _client(server).delete_group(name)
    console.print(f"group {name} removed")


@group_app.command("result")
@handled
def group_result(
    name: str,
    head: Annotated[int, typer.Option(help="rows to show")] = 5,
    out: Annotated[
        Path | None, typer.Option("--out", help="also write the rows, decrypted, as Parquet")
    ] = None,
) -> None:
    """Read the group's merged Parquet rows (local store only) and show the first ones."""
    table = _client(None).group_result(name)
    if out is not None:
        import pyarrow.parquet as pq

        if out.exists():
            raise ConfigError(f"{out} exists; pick a new path (nothing is overwritten)")
        pq.write_table(table, out)
        err.print(f"wrote {table.num_rows:,} rows to {out} (not encrypted)")
    console.print(f"{table.num_rows:,} rows; columns: {', '.join(table.column_names)}")
    shown = Table(*table.column_names)
    for row in table.slice(0, head).to_pylist():
        shown.add_row(
            *(f"[{len(v)} values]" if isinstance(v, list) else str(v) for v in row.values())
        )
    console.print(shown)


# ---- tasks ----------------------------------------------------------------------------
def _task_row(t: Task) -> list[Any]:
    total = t.total
    bar: Any = ProgressBar(total=total or 1, completed=t.done if total else 0, width=20)
    dur = t.duration_s
    return [
        str(t.id),
        t.group,
        str(t.partition),
        _styled(t.state.value),
        str(t.attempt),
        bar,
        f"{t.done:,}/{total:,}" if total is not None else f"{t.done:,}",
        f"{dur:.1f}s" if dur is not None else "",
        (t.exit_reason or "")[:60],
    ]


def _styled(state: str) -> str:
    color = {
        "SUCCEEDED": "green",
        "FAILED": "red",
        "CANCELLED": "yellow",
        "RUNNING": "cyan",
        "RETRYING": "magenta",
    }.get(state, "white")
    return f"[{color}]{state}[/]"


@task_app.command("ls")
@handled
def task_ls(
    group: Annotated[str | None, typer.Option(help="only this group")] = None,
    state: Annotated[str | None, typer.Option(help="only this state")] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many")] = None,
    as_json: AsJson = False,
    server: Server = None,
) -> None:
    """List tasks."""
    tasks = _client(server).list_tasks(group, state, limit)
    if as_json:
        _json([t.model_dump(mode="json") for t in tasks])
        return
    table = Table("id", "group", "part", "state", "try", "progress", "items", "time", "reason")
    for t in tasks:
        table.add_row(*_task_row(t))
    console.print(table)


@task_app.command("show")
@handled
def task_show(task_id: int, as_json: AsJson = False, server: Server = None) -> None:
    """One task: its fields and its state history."""
    client = _client(server)
    t = client.get_task(task_id)
    events = client.task_events(task_id)
    if as_json:
        _json({"task": t.model_dump(mode="json"), "events": events})
        return
    for key, value in t.model_dump().items():
        console.print(f"[bold]{key}[/]: {value}", highlight=False)
    console.print("[bold]history[/]:")
    for e in events:
        reason = f" ({e['reason']})" if e["reason"] else ""
        console.print(f"  {e['at']}  attempt {e['attempt']}: {e['from']} → {e['to']}{reason}")


@task_app.command("logs")
@handled
def task_logs(
    task_id: int,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="until the task ends")] = False,
    server: Server = None,
) -> None:
    """Print a task's log (stdout, stderr and logging of every attempt)."""
    client = _client(server)
    if follow:
        for chunk in client.follow_logs(task_id):
            typer.echo(chunk, nl=False)
        return
    text, _ = client.task_logs(task_id)
    typer.echo(text, nl=False)


@task_app.command("cancel")
@handled
def task_cancel(task_id: int, server: Server = None) -> None:
    """Cancel a task (a running one is stopped)."""
    t = _client(server).cancel_task(task_id)
    console.print(f"task {t.id}: {t.state.value}{' (stopping)' if t.cancel_requested else ''}")


@task_app.command("retry")
@handled
def task_retry(task_id: int, server: Server = None) -> None:
    """Run a FAILED or CANCELLED task again, as a new attempt."""
    client = _client(server)
    t = client.retry_task(task_id)
    if server is None:
        client.spawn_runner([t.group])
    console.print(f"task {t.id}: {t.state.value}, attempt {t.attempt}")


def _watch_table(client: Any, group: str | None) -> tuple[Table, bool]:
    tasks = client.list_tasks(group)
    table = Table("id", "group", "part", "state", "try", "progress", "items", "time", "reason")
    for t in tasks:
        table.add_row(*_task_row(t))
    groups = sorted({t.group for t in tasks})
    captions = []
    for g in groups:
        st = client.group_status(g)
        rate = f"{st.items_per_second:,.0f} items/s" if st.items_per_second else "-"
        eta = f", ETA {st.eta_s:.0f}s" if st.eta_s is not None else ""
        captions.append(f"{g}: {st.state}, {st.done:,}/{st.total or '?'} items, {rate}{eta}")
    table.caption = "\n".join(captions)
    finished = bool(tasks) and all(t.state.terminal for t in tasks)
    return table, finished


@task_app.command("watch")
@handled
def task_watch(
    group: Annotated[str | None, typer.Option(help="only this group")] = None,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
    server: Server = None,
) -> None:
    """A live table of tasks with progress bars, throughput and ETA; ends when all end."""
    client = _client(server)
    table, finished = _watch_table(client, group)
    with Live(table, console=console, refresh_per_second=4) as live:
        while not finished:
            time.sleep(interval)
            table, finished = _watch_table(client, group)
            live.update(table)

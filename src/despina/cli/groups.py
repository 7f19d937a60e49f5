"""``despina group``: what to run, on which data, in how many partitions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from despina.cli.common import (
    AsJson,
    Server,
    client_for,
    console,
    err,
    handled,
    print_json,
    print_listing,
)
from despina.control.models import GroupSpec, Resources
from despina.core.errors import ConfigError

group_app = typer.Typer(
    help="Task groups: what to run, on which data, in how many partitions.", no_args_is_help=True
)


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
    job: Annotated[
        str | None, typer.Option(help="preprocess, audit, train, predict or optimize")
    ] = None,
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
    g = client_for(server).create_group(spec)
    console.print(f"group {g.name} created on {g.cluster}; output: {g.output}")


@group_app.command("start")
@handled
def group_start(
    name: str,
    wait: Annotated[bool, typer.Option(help="run here until every task ends")] = False,
    server: Server = None,
) -> None:
    """Split the source into partitions and start one task each; on a started group, resume
    the tasks not yet ended (after a runner died)."""
    client = client_for(server)
    if wait and server is None:
        tasks = client.start_group(name, wait=True)
        group_status(name, as_json=False, server=None)
        if any(t.state.value != "SUCCEEDED" for t in tasks):
            raise typer.Exit(1)
        return
    resumed = client.get_group(name).started_at is not None
    tasks = client.start_group(name)
    verb = (
        "resumed (a task left RUNNING by a runner that died is retried)" if resumed else "started"
    )
    if server is None:
        pid = client.spawn_runner([name])
        console.print(f"group {name}: {len(tasks)} task(s) {verb}; runner pid {pid}")
    else:
        console.print(f"group {name}: {len(tasks)} task(s) {verb} on the server")
    console.print(f"follow them with: despina task watch --group {name}")


@group_app.command("retry")
@handled
def group_retry(name: str, server: Server = None) -> None:
    """Run every failed or cancelled task of the group again."""
    client = client_for(server)
    tasks = client.retry_failed(name)
    where = "on the server"
    if server is None:
        where = f"runner pid {client.spawn_runner([name])}"
    console.print(f"group {name}: {len(tasks)} task(s) retried; {where}")
    console.print(f"follow them with: despina task watch --group {name}")


@group_app.command("status")
@handled
def group_status(name: str, as_json: AsJson = False, server: Server = None) -> None:
    """The group's state, task counts, throughput and output location."""
    st = client_for(server).group_status(name)
    if as_json:
        print_json(st.model_dump(mode="json"))
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
    client = client_for(server)
    groups = client.list_groups()
    print_listing(
        groups,
        as_json,
        ("name", "cluster", "what", "source", "partitions", "state"),
        lambda g: (
            g.name,
            g.cluster or "(server)",
            g.job or Path(g.script or "").name,
            g.source,
            str(g.partitions),
            client.group_status(g.name).state,
        ),
    )


@group_app.command("env")
@handled
def group_env(name: str, as_json: AsJson = False, server: Server = None) -> None:
    """The group's --env values in the clear (admins and the group's operators; everyone
    else, and every other command, sees ***)."""
    env = client_for(server).group_env(name)
    if as_json:
        print_json(env)
        return
    for key, value in env.items():
        typer.echo(f"{key}={value}")


@group_app.command("rm")
@handled
def group_rm(name: str, server: Server = None) -> None:
    """Remove a group and its tasks (its output files stay)."""
    client_for(server).delete_group(name)
    console.print(f"group {name} removed")


@group_app.command("result")
@handled
def group_result(
    name: str,
    head: Annotated[int, typer.Option(help="rows to show")] = 5,
    out: Annotated[
        Path | None, typer.Option("--out", help="also write the rows, decrypted, as Parquet")
    ] = None,
    server: Server = None,
) -> None:
    """Read the group's merged Parquet rows and show the first ones."""
    table = client_for(server).group_result(name)
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

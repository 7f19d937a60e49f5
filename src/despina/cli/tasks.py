"""``despina task``: one partition of a group each; list, show, logs, cancel, retry, watch."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from despina.cli.common import (
    AsJson,
    Server,
    client_for,
    console,
    handled,
    print_json,
    print_listing,
)
from despina.control.models import Task

task_app = typer.Typer(help="Tasks: one partition of a group each.", no_args_is_help=True)


TASK_COLUMNS = ("id", "group", "part", "state", "try", "progress", "items", "time", "reason")


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
    tasks = client_for(server).list_tasks(group, state, limit)
    print_listing(tasks, as_json, TASK_COLUMNS, _task_row)


@task_app.command("show")
@handled
def task_show(task_id: int, as_json: AsJson = False, server: Server = None) -> None:
    """One task: its fields and its state history."""
    client = client_for(server)
    t = client.get_task(task_id)
    events = client.task_events(task_id)
    if as_json:
        print_json({"task": t.model_dump(mode="json"), "events": events})
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
    client = client_for(server)
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
    t = client_for(server).cancel_task(task_id)
    console.print(f"task {t.id}: {t.state.value}{' (stopping)' if t.cancel_requested else ''}")


@task_app.command("retry")
@handled
def task_retry(task_id: int, server: Server = None) -> None:
    """Run a FAILED or CANCELLED task again, as a new attempt."""
    client = client_for(server)
    t = client.retry_task(task_id)
    if server is None:
        client.spawn_runner([t.group])
    console.print(f"task {t.id}: {t.state.value}, attempt {t.attempt}")


def _watch_table(client: Any, group: str | None) -> tuple[Table, bool]:
    tasks = client.list_tasks(group)
    table = Table(*TASK_COLUMNS)
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


#: Columns the live table needs to show every cell uncut.
WIDE_ENOUGH = 110


def task_line(t: Task) -> str:
    """One task in a line: what ``task watch`` prints where a table would not fit."""
    items = f"{t.done:,}/{t.total:,}" if t.total is not None else f"{t.done:,}"
    dur = f" {t.duration_s:.1f}s" if t.duration_s is not None else ""
    reason = f" - {t.exit_reason}" if t.exit_reason else ""
    return (
        f"task {t.id} {t.group}[{t.partition}] {t.state.value} try {t.attempt} {items}{dur}{reason}"
    )


def _watch_lines(client: Any, group: str | None, interval: float) -> None:
    seen: dict[int, tuple[str, int]] = {}
    while True:
        tasks = client.list_tasks(group)
        for t in tasks:
            key = (t.state.value, t.done)
            if seen.get(t.id) != key:
                seen[t.id] = key
                console.print(task_line(t), highlight=False, soft_wrap=True)
        if tasks and all(t.state.terminal for t in tasks):
            for g in sorted({t.group for t in tasks}):
                st = client.group_status(g)
                rate = f", {st.items_per_second:,.0f} items/s" if st.items_per_second else ""
                console.print(f"group {g}: {st.state}, {st.done:,} items{rate}", soft_wrap=True)
            return
        time.sleep(interval)


@task_app.command("watch")
@handled
def task_watch(
    group: Annotated[str | None, typer.Option(help="only this group")] = None,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
    server: Server = None,
) -> None:
    """A live table of tasks with progress bars, throughput and ETA; ends when all end.

    On a narrow window or when the output is not a terminal (a pipe, a CI log), it prints
    one line per task whenever the task's state or progress changes instead."""
    client = client_for(server)
    if not console.is_terminal or console.width < WIDE_ENOUGH:
        _watch_lines(client, group, interval)
        return
    table, finished = _watch_table(client, group)
    with Live(table, console=console, refresh_per_second=4) as live:
        while not finished:
            time.sleep(interval)
            table, finished = _watch_table(client, group)
            live.update(table)

"""``despina optimize`` searches the model, its training and preprocessing for a dataset;
``despina compress`` makes a served model small and fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from despina.cli.common import Server, client_for, console, err, handled
from despina.core.errors import ConfigError


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    from despina.security.tokens import parse_duration

    return parse_duration(text).total_seconds()


def _table(rows: list[dict[str, Any]]) -> Table:
    done = [r for r in rows if r["state"] == "COMPLETE"]
    best = max((r["accuracy"] for r in done), default=None)
    counts = {s: sum(r["state"] == s for r in rows) for s in ("RUNNING", "COMPLETE", "PRUNED")}
    title = (
        f"{counts['RUNNING']} running, {counts['COMPLETE']} completed, {counts['PRUNED']} "
        f"pruned; best so far {best:.4f}"
        if best is not None
        else "waiting for the first trial"
    )
    table = Table(title=title, title_justify="left")
    for col in ("trial", "state", "accuracy", "audit min", "epochs"):
        table.add_column(col, justify="right" if col != "state" else "left")
    for r in rows[-10:]:
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else ""
        minutes = f"{r['audit_minutes']:.1f}" if r["audit_minutes"] else ""
        name = f"{r['number']}{' (default)' if r['default'] else ''}"
        table.add_row(name, r["state"].lower(), acc, minutes, str(len(r["curve"])))
    return table


@handled
def optimize(
    source: Annotated[str, typer.Argument(help="the dataset, as for despina audit")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for best.yaml and the rest")],
    trials: Annotated[int, typer.Option(help="finished trials the study should have")] = 20,
    timeout: Annotated[
        str | None, typer.Option(help="stop starting trials after this long, e.g. 30m")
    ] = None,
    space: Annotated[
        Path | None, typer.Option(help="YAML search space (default: docs/optimize.md)")
    ] = None,
    workers: Annotated[int, typer.Option(help="trials run at once (processes or tasks)")] = 1,
    study: Annotated[str, typer.Option(help="study name; the same name resumes it")] = "despina",
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    epochs: Annotated[int | None, typer.Option(help="max epochs per trial (default 15)")] = None,
    max_audit_minutes: Annotated[
        float | None,
        typer.Option(
            help="estimated audit time the chosen model may cost (default: 3x the default model's)"
        ),
    ] = None,
    objectives: Annotated[
        str, typer.Option(help="the Pareto front's axes: accuracy,cost[,latency]")
    ] = "accuracy,cost",
    cluster: Annotated[
        str | None, typer.Option(help="run the trials as an optimize task group on this cluster")
    ] = None,
    server: Server = None,
) -> None:
    """Search CNN structure, activation, loss, training and preprocessing with Optuna; write
    best.yaml (for despina audit --model-config), trials.parquet and report.html."""
    from despina.jobs.search_space import SearchConfig, Space, parse_objectives

    if trials < 1:
        raise ConfigError(f"--trials {trials}: search at least one trial (20 is a fair start)")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: run at least one worker")
    parsed = Space.load(space)
    cfg = SearchConfig(
        trials=trials, timeout_s=_duration(timeout), space=parsed.params, study=study, seed=seed,
        epochs=epochs, max_audit_minutes=max_audit_minutes,
        objectives=parse_objectives(objectives),
    )  # fmt: skip
    if cluster is not None:
        result = _on_cluster(source, out, cfg, cluster, workers, server)
    else:
        result = _here(source, out, cfg, parsed, workers)
    default = (
        "" if result.default_accuracy is None else f" (default model {result.default_accuracy:.4f})"
    )
    console.print(
        f"best accuracy {result.best_accuracy:.4f} on the held-out 20%{default}, within "
        f"{result.budget_minutes:.1f} estimated audit minutes",
        highlight=False,
    )
    front = sum(bool(r.get("pareto")) for r in result.trials)
    console.print(
        f"wrote {out / 'best.yaml'}, trials.parquet ({front} trial(s) on the Pareto front of "
        f"{','.join(result.objectives)}) and report.html",
        highlight=False,
    )
    console.print(
        f"audit with it: despina audit SOURCE --out DIR --model-config {out / 'best.yaml'}"
    )


def _here(source: str, out: Path, cfg: Any, space: Any, workers: int) -> Any:
    """The search in processes of this machine, with a live table of trials."""
    from despina.jobs.optimize import optimize as run

    printed: set[int] = set()

    def lines(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            if r["state"] in ("COMPLETE", "PRUNED", "FAIL") and r["number"] not in printed:
                printed.add(r["number"])
                acc = "" if r["accuracy"] is None else f" accuracy {r['accuracy']:.4f}"
                err.print(f"trial {r['number']}: {r['state'].lower()}{acc}", highlight=False)

    options: dict[str, Any] = dict(
        trials=cfg.trials, timeout_s=cfg.timeout_s, space=space, workers=workers,
        study=cfg.study, seed=cfg.seed, epochs=cfg.epochs,
        max_audit_minutes=cfg.max_audit_minutes, objectives=cfg.objectives,
    )  # fmt: skip
    if not console.is_terminal:
        return run(source, out, on_trial=lines, **options)
    with Live(_table([]), console=err, refresh_per_second=2) as view:
        return run(source, out, on_trial=lambda t: view.update(_table(t)), **options)


def _on_cluster(
    source: str, out: Path, cfg: Any, cluster: str, workers: int, server: str | None
) -> Any:
    """The search as an ``optimize`` task group, one task per worker: created (or, when
    it exists, resumed), followed until it ends, its trials then chosen from here."""
    import threading
    import time

    from despina.control.models import GroupSpec
    from despina.core.errors import NotFoundError, TaskError
    from despina.jobs.optimize import finish
    from despina.jobs.study import table_rows

    client = client_for(server)
    name = f"optimize-{cfg.study}"
    try:
        group = client.get_group(name)
    except NotFoundError:
        spec = GroupSpec(name=name, cluster=cluster, source=source, job="optimize",
                         config=cfg.model_dump(mode="json"), partitions=workers)  # fmt: skip
        group = client.create_group(spec)
        err.print(f"group {name}: {workers} worker task(s) on cluster {cluster}")
    else:
        if group.config != cfg.model_dump(mode="json") or group.source != source:
            raise ConfigError(
                f"group {name} exists with another source or search; resume it with the same "
                "options, or pick a new --study name"
            )
    failure: list[Exception] = []
    tasks = client.list_tasks(group=name)
    if not tasks or any(not t.state.terminal for t in tasks):
        if server is None:  # no server: this process schedules the tasks until they end

            def schedule() -> None:
                try:
                    client.start_group(name, wait=True)
                except Exception as exc:
                    failure.append(exc)

            threading.Thread(target=schedule, daemon=True).start()
            while not client.list_tasks(group=name) and not failure:
                time.sleep(0.2)
        else:
            client.start_group(name)
    shown = -1
    while True:
        if failure:
            raise failure[0]
        tasks = client.list_tasks(group=name)
        done = max((t.done for t in tasks), default=0)
        if done != shown:
            shown = done
            err.print(f"{done}/{cfg.trials} trials finished", highlight=False)
        if tasks and all(t.state.terminal for t in tasks):
            break
        time.sleep(1.0)
    failed = [t for t in tasks if t.state.value != "SUCCEEDED"]
    if failed:
        raise TaskError(
            f"worker task(s) {[t.id for t in failed]} of group {name} did not succeed "
            f"({failed[0].exit_reason}); 'despina group retry {name}' runs them again, then "
            "run this command again"
        )
    return finish(table_rows(client.group_result(name)), cfg, out)


@handled
def compress(
    model_dir: Annotated[Path, typer.Argument(help="a model folder (what despina serve takes)")],
    data: Annotated[
        str, typer.Option(help="labelled images the model knows: calibration and held-out split")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="the compressed model folder")],
    int8: Annotated[bool, typer.Option(help="quantize to int8 (ONNX Runtime, static)")] = True,
    prune: Annotated[
        float | None,
        typer.Option(help="fraction of each convolution's channels to remove, then fine-tune"),
    ] = None,
    max_drop: Annotated[
        float, typer.Option(help="accuracy points it may lose on the held-out 20%")
    ] = 0.5,
    seed: Annotated[int, typer.Option(help="random seed of the split")] = 0,
) -> None:
    """Prune channels (--prune, with a short fine-tune on --data) and quantize to int8
    (ONNX Runtime, static, calibrated on --data); refuse the result, writing nothing, if
    it loses more than --max-drop accuracy points."""
    from despina.jobs.compress import compress as run

    result = run(model_dir, data, out, max_drop=max_drop, seed=seed, int8=int8, prune=prune)
    what = " + ".join(
        ([f"pruned {prune:.0%}"] if prune is not None else []) + (["int8"] if int8 else [])
    )
    table = Table(title=f"{model_dir} → {out} ({what})", title_justify="left")
    for col in ("model", "held-out accuracy", "images/s, batch 1", "images/s, batch 64"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, acc, rate in (
        ("fp32", result.accuracy_before, result.rate_before),
        (what, result.accuracy_after, result.rate_after),
    ):
        table.add_row(name, f"{acc:.4f}", f"{rate[1]:,.0f}", f"{rate[64]:,.0f}")
    console.print(table)
    console.print(f"lost {result.drop_points:.2f} points (allowed {max_drop:g}); serve it with: "
                  f"despina serve {out}", highlight=False)  # fmt: skip

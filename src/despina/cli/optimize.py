"""``despina optimize`` searches the model, its training and preprocessing for a dataset;
``despina compress`` makes a served model small and fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from despina.cli.common import console, err, handled
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
    workers: Annotated[int, typer.Option(help="processes running trials at once")] = 1,
    study: Annotated[str, typer.Option(help="study name; the same name resumes it")] = "despina",
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    epochs: Annotated[int | None, typer.Option(help="max epochs per trial (default 15)")] = None,
    max_audit_minutes: Annotated[
        float | None,
        typer.Option(
            help="estimated audit time the chosen model may cost (default: 3x the default model's)"
        ),
    ] = None,
) -> None:
    """Search CNN structure, activation, loss, training and preprocessing with Optuna; write
    best.yaml (for despina audit --model-config), trials.parquet and report.html."""
    from despina.jobs.optimize import optimize as run
    from despina.jobs.search_space import Space

    if trials < 1:
        raise ConfigError(f"--trials {trials}: search at least one trial (20 is a fair start)")
    parsed = Space.load(space)
    live = console.is_terminal
    printed: set[int] = set()

    def lines(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            if r["state"] in ("COMPLETE", "PRUNED", "FAIL") and r["number"] not in printed:
                printed.add(r["number"])
                acc = "" if r["accuracy"] is None else f" accuracy {r['accuracy']:.4f}"
                err.print(f"trial {r['number']}: {r['state'].lower()}{acc}", highlight=False)

    if live:
        with Live(_table([]), console=err, refresh_per_second=2) as view:
            result = run(
                source, out, trials=trials, timeout_s=_duration(timeout), space=parsed,
                workers=workers, study=study, seed=seed, epochs=epochs,
                max_audit_minutes=max_audit_minutes, on_trial=lambda t: view.update(_table(t)),
            )  # fmt: skip
    else:
        result = run(
            source, out, trials=trials, timeout_s=_duration(timeout), space=parsed,
            workers=workers, study=study, seed=seed, epochs=epochs,
            max_audit_minutes=max_audit_minutes, on_trial=lines,
        )  # fmt: skip
    default = (
        "" if result.default_accuracy is None else f" (default model {result.default_accuracy:.4f})"
    )
    console.print(
        f"best accuracy {result.best_accuracy:.4f} on the held-out 20%{default}, within "
        f"{result.budget_minutes:.1f} estimated audit minutes",
        highlight=False,
    )
    console.print(f"wrote {out / 'best.yaml'}, trials.parquet and report.html", highlight=False)
    console.print(
        f"audit with it: despina audit SOURCE --out DIR --model-config {out / 'best.yaml'}"
    )


@handled
def compress(
    model_dir: Annotated[Path, typer.Argument(help="a model folder (what despina serve takes)")],
    data: Annotated[
        str, typer.Option(help="labelled images the model knows: calibration and held-out split")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="the compressed model folder")],
    max_drop: Annotated[
        float, typer.Option(help="accuracy points it may lose on the held-out 20%")
    ] = 0.5,
    seed: Annotated[int, typer.Option(help="random seed of the split")] = 0,
) -> None:
    """Quantize the model to int8 (ONNX Runtime, static, calibrated on --data); refuse it,
    writing nothing, if it loses more than --max-drop accuracy points."""
    from despina.jobs.compress import compress as run

    result = run(model_dir, data, out, max_drop=max_drop, seed=seed)
    table = Table(title=f"{model_dir} → {out} (int8)", title_justify="left")
    for col in ("model", "held-out accuracy", "images/s, batch 1", "images/s, batch 64"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, acc, rate in (
        ("fp32", result.accuracy_before, result.rate_before),
        ("int8", result.accuracy_after, result.rate_after),
    ):
        table.add_row(name, f"{acc:.4f}", f"{rate[1]:,.0f}", f"{rate[64]:,.0f}")
    console.print(table)
    console.print(f"lost {result.drop_points:.2f} points (allowed {max_drop:g}); serve it with: "
                  f"despina serve {out}", highlight=False)  # fmt: skip

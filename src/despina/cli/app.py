"""``despina audit`` and ``despina demo``: findings exit 0; bad input exits non-zero, one line."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from despina.cli.access import (
    events_app,
    keys_app,
    login,
    token_app,
    user_app,
    whoami,
)
from despina.cli.clusters import cluster_app
from despina.cli.common import Server, handled, print_findings
from despina.cli.common import fail as _fail
from despina.cli.deployments import deploy, deployments_app, serve
from despina.cli.groups import group_app
from despina.cli.optimize import compress, optimize
from despina.cli.progress import RichProgress
from despina.cli.reviews import review_app
from despina.cli.server import server_app
from despina.cli.tasks import task_app
from despina.core.config import AuditConfig, ModelConfig, TrainConfig, parse_share
from despina.core.errors import ConfigError, DespinaError

app = typer.Typer(
    name="despina",
    help="Deep-learning data quality: audit image datasets with a CNN, run work as task "
    "groups on local or Ray clusters, and serve models that flag bad input.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(server_app, name="server")
app.add_typer(cluster_app, name="cluster")
app.add_typer(group_app, name="group")
app.add_typer(task_app, name="task")
app.add_typer(deployments_app, name="deployments")
app.command("deploy")(deploy)
app.command("serve")(serve)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(events_app, name="events")
app.add_typer(keys_app, name="keys")
app.add_typer(review_app, name="review")
app.command("login")(login)
app.command("whoami")(whoami)
app.command("optimize")(optimize)
app.command("compress")(compress)
console = Console()
err = Console(stderr=True)


def _config_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    return msg if msg.startswith("--") else f"invalid option {where}: {msg}"


@app.command()
def audit(
    source: Annotated[
        str,
        typer.Argument(
            help="folder of class subfolders, CSV/Parquet "
            "manifest, builtin:digits or fashion-mnist:DIR"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    folds: Annotated[int, typer.Option(help="cross-validation folds")] = 5,
    epochs: Annotated[
        int | None,
        typer.Option(
            help="max epochs per model (default: 15 images, fewer past about 9,000 "
            "images; 40 tables)"
        ),
    ] = None,
    image_size: Annotated[
        int | None, typer.Option(help="model input size (default: from the data, at most 32)")
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    checks: Annotated[
        str | None, typer.Option(help="comma-separated checks (default: all)")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes (default: the cores available, at most 8)")
    ] = None,
    width: Annotated[int, typer.Option(help="CNN width")] = 32,
    depth: Annotated[int, typer.Option(help="CNN depth (conv blocks)")] = 2,
    drop_label_issues: Annotated[
        bool, typer.Option(help="drop label issues from cleaned.csv instead of relabeling")
    ] = False,
    label_rounds: Annotated[
        int, typer.Option(help="cross-validation rounds (later ones train without flags)")
    ] = 2,
    round_share: Annotated[
        str,
        typer.Option(
            help="a later round continues the round before's models for this share of "
            "their epochs (0 to 1); 'none': new models from the start on a new fold split"
        ),
    ] = "1/3",
    root: Annotated[
        Path | None,
        typer.Option(help="folder manifest paths must stay inside (default: the manifest's)"),
    ] = None,
    model_config: Annotated[
        Path | None,
        typer.Option(
            help="best.yaml from despina optimize (its model, training and input size win "
            "over --width, --depth, --epochs and --image-size)"
        ),
    ] = None,
    optimize: Annotated[
        int | None,
        typer.Option(
            help="search this many models first (despina optimize, into OUT/search) and audit "
            "with the winner"
        ),
    ] = None,
    kind: Annotated[
        str,
        typer.Option(
            help="image, table or sequence; auto: series for a CSV/Parquet file with "
            "series_id and t columns, a table for one without a path column, images otherwise"
        ),
    ] = "auto",
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="your own model: a .keras file (Keras 3), a .py file whose "
            "build(input_shape, num_classes) returns a torch.nn.Module (runs with your "
            "rights: only files you trust), or a frozen .onnx model or TensorFlow SavedModel "
            "folder used without training",
        ),
    ] = None,
    backbone: Annotated[
        Path | None,
        typer.Option(
            help="an image network, ONNX or a .py file whose build() returns a torch module "
            "(with INPUT_SHAPE): each image goes through it once, at its input size, and a "
            "small head is trained per fold on the embeddings (no model/ is written)"
        ),
    ] = None,
    family: Annotated[
        str | None,
        typer.Option(help="a sequence audit's model: cnn (default), gru, lstm or hybrid"),
    ] = None,
    corrections: Annotated[
        Path | None,
        typer.Option(
            help="a corrections manifest (despina review export): relabel and drop apply "
            "before the audit, keep and outlier settle the findings (images)"
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="a table's label column (leave out: no label checks)")
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option(
            help="YAML overriding a table's inferred column kinds (columns: {NAME: KIND})"
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="run as a task group on this cluster (images): each partition is scanned "
            "by a task of its own, then one task audits the whole source"
        ),
    ] = None,
    partitions: Annotated[
        int, typer.Option(help="with --cluster: scan tasks to split the source into")
    ] = 2,
    server: Server = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Train a model with cross-validation and report label issues, outliers, duplicates and
    defects (images) or bad values (tables)."""
    from despina.data.tables import is_sequence_source, is_table_source
    from despina.jobs.audit import audit as run_audit
    from despina.jobs.sequence_audit import audit_sequences
    from despina.jobs.table_audit import audit_table
    from despina.models.frozen import is_saved_model

    try:
        cfg = AuditConfig(
            folds=folds,
            image_size=image_size,
            seed=seed,
            workers=workers,
            checks=tuple(c.strip() for c in checks.split(",") if c.strip()) if checks else None,
            drop_label_issues=drop_label_issues,
            label_rounds=label_rounds,
            round_share=parse_share(round_share),
            model=ModelConfig(width=width, depth=depth),
            # Epochs asked for are run, whatever the dataset's size (early stopping aside).
            train=TrainConfig(**({} if epochs is None else {"epochs": epochs, "max_steps": None})),
        )
    except ValidationError as exc:
        raise _fail(_config_error(exc), 2) from None
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    if kind not in ("auto", "image", "table", "sequence"):
        raise _fail(f"--kind {kind}: use image, table, sequence or auto", 2)
    is_sequence = kind == "sequence" or (kind == "auto" and is_sequence_source(source))
    is_table = kind == "table" or (kind == "auto" and is_table_source(source) and not is_sequence)
    if not (is_table or is_sequence) and (target is not None or schema is not None):
        raise _fail("--target and --schema are for tables: add --kind table", 2)
    if (
        model is not None
        and model.suffix.lower() not in (".py", ".keras", ".onnx")
        and not is_saved_model(model)
    ):
        raise _fail(
            f"--model {model}: give a .py file with a build() function, a .keras model, a "
            "frozen .onnx model or a TensorFlow SavedModel folder",
            2,
        )
    if backbone is not None and (is_table or is_sequence):
        raise _fail("--backbone is for images; tables and series take --model", 2)
    if corrections is not None and (is_table or is_sequence or cluster is not None):
        raise _fail("--corrections applies to an image audit on this machine", 2)
    if family is not None and not is_sequence:
        raise _fail("--family chooses a sequence model: add --kind sequence", 2)
    if (is_table or is_sequence) and (optimize is not None or model_config is not None):
        raise _fail("--optimize and --model-config search and configure the image CNN; "
                    "tables and sequences train their models with the defaults", 2)  # fmt: skip
    if cluster is not None:
        if is_table or is_sequence or model or backbone or optimize or model_config:
            raise _fail(
                "--cluster runs the image audit with the built-in model; tables, series, "
                "--model, --backbone and --optimize run on this machine",
                2,
            )
        from despina.cli.cluster_audit import audit_on_cluster

        audit_on_cluster(source, out, cfg, cluster, partitions, server)
        return
    if optimize is not None:
        if model_config is not None:
            raise _fail("give --optimize N or --model-config FILE, not both", 2)
        model_config = _search_first(source, out / "search", optimize, cfg, quiet)
    if model_config is not None:
        from despina.jobs.search_space import load_model_config

        try:
            cfg = load_model_config(model_config, cfg)
        except DespinaError as exc:
            raise _fail(str(exc), exc.exit_code) from None
    try:
        if is_sequence:
            run = partial(audit_sequences, source, out, cfg, target=target, family=family,
                          model_file=model)  # fmt: skip
        elif is_table:
            run = partial(audit_table, source, out, cfg, target=target, schema_file=schema,
                          model_file=model)  # fmt: skip
        else:
            run = partial(run_audit, source, out, cfg, root=root, model_file=model,
                          backbone=backbone, corrections=corrections)  # fmt: skip
        if quiet:
            report = run()
        else:
            with RichProgress(err) as progress:
                report = run(progress=progress)
    except DespinaError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    console.print(f"[bold]Audit of[/] {report.summary['source']}", highlight=False)
    streamed = report.summary.get("streamed")
    if streamed:
        console.print(
            f"too large to hold: audited a uniform sample of {streamed['sampled_rows']:,} of "
            f"its {streamed['rows_in_file']:,} rows; {streamed['duplicate_rows_in_file']:,} "
            "rows of the whole file repeat an earlier row",
            highlight=False,
        )
    accuracy = report.summary.get("oof_accuracy")
    if accuracy is not None and accuracy < 0.7:
        err.print(
            f"[yellow]warning:[/] the cross-validated model agrees with only {accuracy:.0%} of "
            "the given labels; label findings are unreliable. Train longer (--epochs), "
            "use more images, or check that the labels mean what you think.",
            highlight=False,
        )
    print_findings(report.counts, report.health, accuracy)
    console.print(f"report: {report.report_html}")


def _search_first(source: str, out: Path, trials: int, cfg: AuditConfig, quiet: bool) -> Path:
    """``despina audit --optimize N``: the search, its choice printed; best.yaml's path."""
    from despina.jobs.optimize import optimize as run_search

    shown = [-1]

    def line(rows: list[dict[str, Any]]) -> None:
        done = sum(r["state"] in ("COMPLETE", "PRUNED") for r in rows)
        if not quiet and done != shown[0]:
            shown[0] = done
            err.print(f"model search: {done}/{trials} trials finished", highlight=False)

    try:
        result = run_search(source, out, trials=trials, seed=cfg.seed,
                            epochs=cfg.train.epochs, on_trial=line)  # fmt: skip
    except DespinaError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    default = result.default_accuracy
    console.print(
        f"model search: best held-out accuracy {result.best_accuracy:.4f}"
        + ("" if default is None else f" (default model {default:.4f})")
        + f"; auditing with {out / 'best.yaml'}",
        highlight=False,
    )
    return out / "best.yaml"


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")] = Path("demo-output"),
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    workers: Annotated[
        int | None, typer.Option(help="worker processes (default: the cores available, at most 8)")
    ] = None,
) -> None:
    """Audit scikit-learn's digits with injected problems and score found versus injected."""
    from despina.jobs.demo import run_demo

    try:
        with RichProgress(err) as progress:
            report, scores = run_demo(out, seed=seed, workers=workers, progress=progress)
    except DespinaError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    table = Table(title=f"Found versus injected (digits, seed {seed})")
    for col in ("problem", "injected", "flagged", "correct", "precision", "recall"):
        table.add_column(col, justify="left" if col == "problem" else "right")
    for s in scores:
        table.add_row(
            s.problem,
            str(s.injected),
            str(s.flagged),
            str(s.true_positives),
            f"{s.precision:.2f}",
            f"{s.recall:.2f}",
        )
    console.print(table)
    console.print(f"health score {report.health:.1%}; {report.counts['samples']} samples")
    console.print(f"report: {report.report_html}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app(prog_name="despina")


if __name__ == "__main__":
    main()


@app.command("train-detector")
@handled
def train_detector(
    dataset: Annotated[
        str, typer.Argument(help="a labeled image dataset (folder, manifest, fashion-mnist:DIR)")
    ],
    backgrounds: Annotated[Path, typer.Option(help="a folder of background photos")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the model folder to add it to")],
    steps: Annotated[int, typer.Option(help="training steps of 16 synthetic canvases")] = 2000,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Train the `learned` extractor: the dataset's images pasted onto the photos."""
    from despina.jobs.detector import train_detector_job

    with RichProgress() as progress:
        progress.start("detector", steps)
        info = train_detector_job(
            dataset,
            backgrounds,
            out,
            steps=steps,
            seed=seed,
            on_step=lambda *_: progress.advance("detector"),
        )
        progress.finish("detector")
    console.print(
        f"detector trained on {info['objects']} images and {info['backgrounds']} photos "
        f"({info['canvas']} px canvases): {info['folder']}; deploy with --extractor learned"
    )

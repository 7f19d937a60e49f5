"""Search the CNN, its training and its preprocessing for the data at hand, with Optuna.

Each trial trains one model with the parameters Optuna's TPE sampler proposes
(multivariate, with the constant liar so parallel workers do not propose the same point)
on a fixed 80% of the data, reports its validation accuracy after every epoch to a pruner
(median: a trial worse than the median of earlier trials at the same epoch stops there),
and is scored by its accuracy on the other 20%, against the labels as given (the only
labels a user has). The first trial is always Despina's default model, so its score and
cost are in the same study. Training seconds are recorded beside the accuracy: an audit
trains folds × rounds such models, so the winner is the most accurate model whose
estimated audit time stays within a budget (by default three times the default's).

Workers share one study (see :mod:`despina.jobs.study` for where it lives): processes
of this machine, or the tasks of an ``optimize`` task group on a cluster. Running the
same search again resumes it; trials a killed worker left running are failed and queued
again. Outputs: ``best.yaml`` (what ``despina audit --model-config`` and the ``train``
job read), ``trials.parquet`` (with the Pareto front of accuracy against audit time, and
inference time when asked) and ``report.html``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from despina.core.config import AuditConfig, ModelConfig
from despina.core.errors import ConfigError, DataError
from despina.core.processes import usable_cores
from despina.jobs.search_report import StudyResult, report_html
from despina.jobs.search_space import SearchConfig, Space, configs, default_params
from despina.jobs.study import (
    close_storage,
    pareto,
    requeue_stale,
    rows_table,
    study_storage,
    trial_rows,
    write_table,
)

logger = logging.getLogger(__name__)

#: An audit's default: the folds and rounds each trained model stands for (each later
#: round continues the round before's models for its share of the epochs).
_AUDIT = AuditConfig()
AUDIT_TRAININGS = _AUDIT.folds * (1 + (_AUDIT.label_rounds - 1) * (_AUDIT.round_share or 1.0))
HOLDOUT = 0.2


# ---- data ---------------------------------------------------------------------------
@dataclass
class Prepared:
    """A source decoded once: its readable images' labels, the fixed 80/20 split, and
    normalized arrays per (size, colour mode), made when a trial first asks."""

    records: list[Any]
    labels: np.ndarray
    class_names: list[str]
    auto_size: int
    train_idx: np.ndarray
    test_idx: np.ndarray
    resized: dict[int, np.ndarray]
    arrays_: dict[tuple[int, str], np.ndarray]

    def arrays(self, size: int | None, color_mode: str) -> np.ndarray:
        from despina.jobs.scan import scan
        from despina.preprocessing.image import ImagePipeline

        side = size or self.auto_size
        if side not in self.resized:
            self.resized[side] = scan(
                self.records, side, "resize", AuditConfig().max_pixels
            ).resized
        if (side, color_mode) not in self.arrays_:
            pipeline = ImagePipeline(side, "resize", color_mode).fit(self.resized[side])
            self.arrays_[side, color_mode] = pipeline.transform_resized(self.resized[side])
        return self.arrays_[side, color_mode]


def prepare(source: str, seed: int) -> Prepared:
    """Load ``source``, keep its readable images, and split them 80/20 (stratified)."""
    from despina.data.sources import load_source
    from despina.jobs.audit import auto_image_size
    from despina.jobs.scan import scan
    from despina.training.trainer import validation_split

    dataset = load_source(source)
    size = auto_image_size(dataset.records, ModelConfig().depth, AuditConfig().max_pixels)
    scanned = scan(dataset.records, size, "resize", AuditConfig().max_pixels)
    valid = np.array([f is not None for f in scanned.features])
    records = [r for r, ok in zip(dataset.records, valid, strict=True) if ok]
    names = dataset.class_names
    labels = np.array([names.index(r.label) for r in records], dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise DataError(f"{source}: a search needs readable images of at least two classes")
    train_idx, test_idx = validation_split(labels, HOLDOUT, seed)
    return Prepared(
        records, labels, names, size, train_idx, test_idx, {size: scanned.resized[valid]}, {}
    )


# ---- trials -------------------------------------------------------------------------
def run_trial(trial: Any, data: Prepared, space: Space, base: AuditConfig, worker: str) -> float:
    """Train one model with the trial's parameters; its accuracy on the held-out 20%."""
    import optuna
    import torch

    from despina.training.trainer import predict, train_classifier

    trial.set_user_attr("worker", worker)
    params = space.suggest(trial)
    cfg = configs(params, base)
    x = data.arrays(cfg.image_size, cfg.color_mode)
    curve: list[float] = []

    def epoch_done(epoch: int, _train: float, _val: float, accuracy: float) -> None:
        curve.append(round(accuracy, 5))
        trial.report(accuracy, epoch)
        if trial.should_prune():
            trial.set_user_attr("curve", curve)
            raise optuna.TrialPruned(f"epoch {epoch}: validation accuracy {accuracy:.3f}")

    torch.manual_seed(base.seed)
    t0 = time.perf_counter()
    tr = data.train_idx
    model = train_classifier(
        x[tr], data.labels[tr], len(data.class_names), cfg.model, cfg.train, base.seed, epoch_done
    )
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    probs, _ = predict(model, x[data.test_idx])
    infer_ms = 1000 * (time.perf_counter() - t1) / max(1, len(data.test_idx))
    accuracy = float((probs.argmax(1) == data.labels[data.test_idx]).mean())
    trial.set_user_attr("curve", curve)
    trial.set_user_attr("train_seconds", round(seconds, 3))
    trial.set_user_attr("audit_minutes", round(seconds * AUDIT_TRAININGS / 60, 3))
    trial.set_user_attr("infer_ms", round(infer_ms, 4))
    trial.set_user_attr("image_size", cfg.image_size or data.auto_size)
    return accuracy


# ---- the study ----------------------------------------------------------------------
def open_study(storage: Any, name: str, space: Space, seed: int, worker: int = 0) -> Any:
    """The study ``name``: created, or loaded when it exists (with the same space, else a
    ConfigError). Each worker, and each resumption, seeds its sampler apart: the same
    seed would propose the same points again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ids = {s.study_name: s._study_id for s in storage.get_all_studies()}
    existing = len(storage.get_all_trials(ids[name], deepcopy=False)) if name in ids else 0
    sampler = optuna.samplers.TPESampler(
        seed=seed + 7919 * worker + 104729 * existing,
        multivariate=True,
        constant_liar=True,
        n_startup_trials=5,
    )
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    stored = study.user_attrs.get("space")
    if stored is None:
        study.set_user_attr("space", space.params)
    elif stored != json.loads(json.dumps(space.params)):
        raise ConfigError(
            f"study {name!r} was run with another search space; resume it with the same "
            "--space, or pick a new --study name"
        )
    return study


def _seed_default(study: Any, space: Space, base: AuditConfig) -> None:
    """The first trial of a new study is Despina's default model."""
    if not study.trials:
        study.enqueue_trial(default_params(space, base), user_attrs={"default": True})


def run_worker(study: Any, data: Prepared, space: Space, base: AuditConfig, trials: int,
               deadline: float | None, worker: str) -> None:  # fmt: skip
    """Run trials until the study has ``trials`` finished ones or the deadline passes."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    done = MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
    if _finished(study) >= trials:
        return
    timeout = None if deadline is None else deadline - time.time()
    if timeout is not None and timeout <= 0:
        return
    study.optimize(
        lambda t: run_trial(t, data, space, base, worker),
        callbacks=[done],
        timeout=timeout,
        catch=(RuntimeError, ValueError),
        gc_after_trial=True,
    )


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _process_worker(journal: str, name: str, source: str, cfg_json: str, deadline: float | None,
                    threads: int, worker: int) -> None:  # fmt: skip
    """One worker process of :func:`optimize`."""
    import torch

    torch.set_num_threads(threads)
    cfg = SearchConfig.model_validate_json(cfg_json)
    space = Space.parse(cfg.space)
    study = open_study(study_storage(Path(journal)), name, space, cfg.seed, worker)
    data = prepare(source, cfg.seed)
    run_worker(study, data, space, cfg.base(), cfg.trials, deadline, f"w{worker}")


def optimize(
    source: str | Path,
    out: str | Path,
    *,
    trials: int = 20,
    timeout_s: float | None = None,
    space: Space | None = None,
    workers: int = 1,
    study: str = "despina",
    seed: int = 0,
    epochs: int | None = None,
    max_audit_minutes: float | None = None,
    objectives: tuple[str, ...] = ("accuracy", "cost"),
    on_trial: Callable[[list[dict[str, Any]]], None] | None = None,
) -> StudyResult:
    """Search ``space`` (default: :data:`DEFAULT_SPACE`) for the best model on ``source``
    and write ``best.yaml``, ``trials.parquet`` and ``report.html`` into ``out``.

    ``trials`` counts every finished trial of the study (a resumed one included);
    ``workers`` processes of this machine share it; ``on_trial`` gets the table of trials
    as they end.
    """
    if trials < 1:
        raise ConfigError(f"--trials {trials}: search at least one trial (20 is a fair start)")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: use at least one worker process")
    space = space or Space.parse(None)
    cfg = SearchConfig(trials=trials, timeout_s=timeout_s, space=space.params, study=study,
                       seed=seed, epochs=epochs, max_audit_minutes=max_audit_minutes,
                       objectives=objectives)  # fmt: skip
    out = Path(out)
    prepare(str(source), seed)  # bad data fails here, before anything is written
    journal = out / "study.journal"  # one machine's workers: a journal beside the outputs
    handle = open_study(study_storage(journal), study, space, seed)
    out.mkdir(parents=True, exist_ok=True)
    requeued = requeue_stale(handle)  # no worker of this search runs yet
    if requeued:
        logger.warning("%d trial(s) left running by a killed worker are queued again", requeued)
    _seed_default(handle, space, cfg.base())
    deadline = None if timeout_s is None else time.time() + timeout_s
    threads = max(1, usable_cores() // workers)
    args = (str(journal), study, str(source), cfg.model_dump_json(), deadline, threads)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_process_worker, args=(*args, i), daemon=True) for i in range(workers)
    ]
    for p in procs:
        p.start()
    seen = -1
    while any(p.is_alive() for p in procs):
        # The table once a second, and at once when a worker ends.
        multiprocessing.connection.wait([p.sentinel for p in procs if p.is_alive()], 1.0)
        table = trial_rows(handle)
        finished = sum(r["state"] in ("COMPLETE", "PRUNED") for r in table)
        if on_trial is not None and len(table) + finished != seen:
            seen = len(table) + finished
            on_trial(table)
    failed = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    table = trial_rows(handle)
    if on_trial is not None:
        on_trial(table)
    if failed and not any(r["state"] == "COMPLETE" for r in table):
        raise DataError(f"every search worker failed (exit codes {failed}); see the log above")
    return finish(table, cfg, out)


def run_group_worker(
    source: str,
    output: Path,
    cfg: SearchConfig,
    *,
    name: str,
    partition: int,
    threads: int,
    started: float,
    database_url: str = "",
    on_finished: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """One task of an ``optimize`` task group: a worker on the group's study. It requeues
    what its own killed attempt left running, runs trials until the study has enough,
    writes the study's outputs into ``output`` as they stand, and returns its trials."""
    import threading

    import torch

    torch.set_num_threads(threads)
    space = Space.parse(cfg.space)
    storage = study_storage(output / "study.journal", database_url)
    study = open_study(storage, name, space, cfg.seed, partition)
    worker = f"p{partition}"
    requeue_stale(study, worker)
    if partition == 0:
        _seed_default(study, space, cfg.base())
    data = prepare(source, cfg.seed)
    deadline = None if cfg.timeout_s is None else started + cfg.timeout_s
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(2.0):
            if on_finished is not None:
                on_finished(min(cfg.trials, _finished(study)))

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        run_worker(study, data, space, cfg.base(), cfg.trials, deadline, worker)
        rows = trial_rows(study)
    finally:
        stop.set()
        reporter.join()
        close_storage(storage)
    if any(r["state"] == "COMPLETE" for r in rows):
        finish(rows, cfg, output)
    return [r for r in rows if r["worker"] == worker]


def finish(table: list[dict[str, Any]], cfg: SearchConfig, out: Path) -> StudyResult:
    """Choose the most accurate model within the audit-time budget; write ``best.yaml``,
    ``trials.parquet`` (the Pareto front marked) and ``report.html``."""
    complete = [r for r in table if r["state"] == "COMPLETE" and r["accuracy"] is not None]
    if not complete:
        raise DataError("no trial of the search completed; see the log, or give it more time")
    base = cfg.base()
    default = next((r for r in complete if r["default"]), None)
    budget = cfg.max_audit_minutes
    if budget is None:
        anchor = default["audit_minutes"] if default else min(r["audit_minutes"] for r in complete)
        budget = 3 * anchor
    within = [r for r in complete if (r["audit_minutes"] or 0) <= budget] or complete
    best = max(within, key=lambda r: (r["accuracy"], -(r["audit_minutes"] or 0)))
    front = pareto(table, cfg.objectives)
    for r in table:
        r["pareto"] = r["number"] in front
    chosen_cfg = configs(best["params"], base)
    size = best.get("image_size") or chosen_cfg.image_size
    chosen = {
        "image_size": size,
        "color_mode": chosen_cfg.color_mode,
        "model": chosen_cfg.model.model_dump(),
        "train": chosen_cfg.train.model_dump(),
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "best.yaml", yaml.safe_dump(chosen, sort_keys=False))
    write_table(out / "trials.parquet", rows_table(table))
    result = StudyResult(
        best_params=best["params"],
        best_config=chosen_cfg.model_copy(update={"image_size": size}),
        best_accuracy=float(best["accuracy"]),
        default_accuracy=None if default is None else float(default["accuracy"]),
        budget_minutes=float(budget),
        trials=table,
        out=out,
        objectives=cfg.objectives,
    )
    _write_atomic(out / "report.html", report_html(result, Space.parse(cfg.space)))
    return result


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

"""The built-in jobs as tasks: ``preprocess`` and ``predict`` per partition; ``audit`` and
``train`` over the whole source (their groups run as one partition); ``optimize``, whose
every partition is a worker of one model search over the whole source.

An image ``audit`` group of several partitions runs in stages: a ``scan`` task per
partition decodes its images once into a shard (:mod:`despina.jobs.shards`); a ``fold``
task per fold of each round of the cross-validation trains from the shards (a stage per
round, :mod:`despina.jobs.folds`); then one ``audit`` task reads the shards and the folds'
tables and runs the checks, the report and the final model."""

from __future__ import annotations

import time
from datetime import UTC
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from despina.control.models import TaskGroup
from despina.control.partitions import plan, records_for
from despina.control.runtime import TaskContext, write_partition
from despina.core.config import AuditConfig
from despina.core.errors import ConfigError, TaskError
from despina.jobs.batch import (
    PredictConfig,
    PreprocessConfig,
    TrainJobConfig,
    predict_records,
    preprocess_records,
    train_model,
)
from despina.jobs.search_space import SearchConfig

WHOLE_SOURCE_JOBS = frozenset({"audit", "train"})
#: Whole-source jobs that can split their first stage over partitions.
STAGED_JOBS = frozenset({"audit"})
#: Jobs whose partitions each work on the whole source, side by side.
WORKER_JOBS = frozenset({"optimize"})

CONFIGS: dict[str, type[Any]] = {
    "preprocess": PreprocessConfig,
    "predict": PredictConfig,
    "train": TrainJobConfig,
    "audit": AuditConfig,
    "optimize": SearchConfig,
}


def parse_config(job: str, config: dict[str, Any]) -> Any:
    """Validate a job's config early (at group creation) with a message naming the key."""
    try:
        return CONFIGS[job](**config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"invalid {job} config at {where}: {first['msg']}") from None


class _Progress:
    """The audit's progress protocol, bound to the task's progress row (one stage at a time)."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx

    def start(self, stage: str, total: int | None = None) -> None:
        self.ctx.logger.info("stage %s (%s steps)", stage, total)
        self.ctx.progress(0, total)

    def advance(self, stage: str, steps: int = 1) -> None:
        self.ctx.advance(steps)

    def finish(self, stage: str) -> None:
        pass


def run_builtin(
    job: str, group: TaskGroup, spec: dict[str, Any], ctx: TaskContext, database_url: str = ""
) -> list[str]:
    """Run one task of a built-in job; ``database_url`` is the control plane's store (a
    search keeps its study there when it is PostgreSQL)."""
    cfg = parse_config(job, group.config)
    if job in ("preprocess", "predict"):
        records = records_for(group.source, spec)
        ctx.progress(0, len(records))
        per_partition = preprocess_records if job == "preprocess" else predict_records
        table = per_partition(records, cfg, on_items=ctx.advance)
        if job == "preprocess":
            ctx.metrics["unreadable"] = table.num_rows - table.column("error").null_count
        return write_partition(ctx, table)
    if job == "train":
        ctx.progress(0, cfg.train.epochs)
        metrics = train_model(group.source, ctx.output, cfg, on_epoch=lambda *_: ctx.advance())
        ctx.metrics.update(metrics)
        return [str(ctx.output / "model")]
    if job == "audit" and spec.get("step") == "scan":
        return _scan_shard(group, spec, cfg, ctx)
    if job == "audit" and spec.get("step") == "fold":
        return _train_fold(group, spec, cfg, ctx, database_url)
    if job == "audit":
        from despina.jobs.audit import audit

        if cfg.workers is None:  # a task uses the CPUs its group reserves, not the machine's
            cfg = cfg.model_copy(update={"workers": max(1, int(group.resources.cpus))})
        staged = spec.get("step") == "audit"
        folds = _read_folds(group, database_url, int(spec["stage"]) - 1) if staged else None
        # The merged scan is handed over, not kept here: the audit frees it once prepared.
        report = audit(group.source, ctx.output / "audit", cfg, progress=_Progress(ctx),
                       scanned=_read_shards(group, database_url) if staged else None,
                       folds=folds)  # fmt: skip
        ctx.metrics.update(
            {"health_score": report.health, **{k: int(v) for k, v in report.counts.items()}}
        )
        return [str(Path(report.report_html).parent)]
    if job == "optimize":
        return _optimize(group, spec, cfg, ctx, database_url)
    raise ConfigError(f"unknown job {job!r}")


def check_partitions(job: str, partitions: int) -> None:
    if job in WHOLE_SOURCE_JOBS and job not in STAGED_JOBS and partitions != 1:
        raise ConfigError(f"the {job} job works on the whole source; use --partitions 1")


def job_parts(
    job: str | None, source: str, partitions: int, config: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The partitions a group's tasks get when it starts; ``config``: the group's."""
    if job in WORKER_JOBS:
        return worker_parts(partitions)
    if job in STAGED_JOBS and partitions > 1:
        from despina.audit.checks import default_registry
        from despina.audit.runner import select_checks
        from despina.jobs.rounds import model_rounds

        cfg = parse_config(job, config or {})
        rounds = model_rounds(select_checks(default_registry(), cfg.checks), cfg)
        return staged_parts(plan(source, partitions), rounds, cfg.folds)
    return plan(source, partitions)


def staged_parts(
    parts: list[dict[str, Any]], rounds: int = 0, folds: int = 0
) -> list[dict[str, Any]]:
    """A staged audit's partitions: the source's pieces scanned in stage 0; then, a stage
    per round, a task per fold; then one task that audits the whole source from them."""
    scans = [{**p, "stage": 0, "step": "scan"} for p in parts]
    fold_tasks = [
        {"stage": 1 + r, "step": "fold", "round": r, "fold": k}
        for r in range(rounds)
        for k in range(folds)
    ]
    return [*scans, *fold_tasks, {"stage": 1 + rounds, "step": "audit"}]


def _scan_shard(group: TaskGroup, spec: dict[str, Any], cfg: Any, ctx: TaskContext) -> list[str]:
    from despina.jobs.audit import auto_image_size
    from despina.jobs.shards import scan_shard

    records = records_for(group.source, spec)
    ctx.progress(0, len(records))
    size = cfg.image_size or auto_image_size(records, cfg.model.depth, cfg.max_pixels)
    table = scan_shard(records, size, cfg.max_pixels, on_done=ctx.advance)
    ctx.metrics["unreadable"] = table.num_rows - table.column("load_defect").null_count
    return write_partition(ctx, table)


def _stage_tables(group: TaskGroup, database_url: str, stage: int) -> list[Any]:
    """The tables the group's tasks of ``stage`` wrote, in partition order; each opened with
    the context of the attempt that wrote it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from despina.control.runtime import output_keyring, partition_context
    from despina.control.settings import worker_seals
    from despina.control.store import Store
    from despina.security.envelope import read_artifact

    store = Store(database_url, migrate_schema=False)
    try:
        tasks = sorted(
            (t for t in store.list_tasks(group=group.name) if t.stage == stage),
            key=lambda t: t.partition,
        )
    finally:
        store.close()
    tables = []
    for task in tasks:
        if not task.outputs:
            raise TaskError(f"task {task.id} (partition {task.partition}) wrote no table")
        try:
            data = read_artifact(
                task.outputs[0], output_keyring(),
                partition_context(group.name, task.partition, task.attempt),
                sealed=worker_seals(),
            )  # fmt: skip
        except OSError as exc:  # the shard's storage is not mounted here, or it was removed
            raise TaskError(
                f"cannot read {task.outputs[0]}, the table task {task.id} (stage {stage}, "
                f"partition {task.partition}) wrote: {exc.strerror or exc}. The group's "
                f"output folder {group.output} must be storage every node of the cluster "
                "reads (a shared folder); retry that task if its table was removed"
            ) from None
        tables.append(pq.read_table(pa.BufferReader(data)))
    return tables


def _read_shards(group: TaskGroup, database_url: str) -> Any:
    """The ids and merged scan of the group's stage-0 shards, in partition order."""
    from despina.jobs.shards import merge_shards

    return merge_shards(_stage_tables(group, database_url, 0))


def _prepared(group: TaskGroup, cfg: Any, scanned: Any) -> Any:
    from despina.data.sources import load_source
    from despina.jobs.audit import prepare_images

    return prepare_images(load_source(group.source), cfg, scanned=scanned)


def _read_folds(group: TaskGroup, database_url: str, rounds: int) -> Any:
    """Each of the first ``rounds`` rounds of the group's folds (stages 1 to ``rounds``)."""
    from despina.jobs.folds import read_round

    return [read_round(_stage_tables(group, database_url, 1 + r)) for r in range(rounds)]


def _train_fold(
    group: TaskGroup, spec: dict[str, Any], cfg: Any, ctx: TaskContext, database_url: str
) -> list[str]:
    """One fold of one round of the audit's cross-validation, from the group's shards."""
    from despina.jobs.folds import train_fold
    from despina.jobs.rounds import round_share

    round_, fold = int(spec["round"]), int(spec["fold"])
    prep = _prepared(group, cfg, _read_shards(group, database_url))  # the scan not kept
    earlier = None
    if round_ > 0:  # the round before only (stage round_): its label issues are left out
        from despina.jobs.folds import read_round

        earlier = read_round(_stage_tables(group, database_url, round_))
    ctx.progress(0, cfg.fold_epochs(len(prep.x), cfg.train, round_share(cfg, None, round_)))
    threads = max(1, int(group.resources.cpus))
    table = train_fold(prep, cfg, round_, fold, earlier, threads, on_epoch=lambda *_: ctx.advance())
    ctx.metrics.update({"round": round_, "fold": fold})
    return write_partition(ctx, table)


def worker_parts(partitions: int) -> list[dict[str, Any]]:
    """A worker job's partitions: one worker each, every one on the whole source."""
    return [{"kind": "worker", "worker": i} for i in range(partitions)]


def _optimize(
    group: TaskGroup, spec: dict[str, Any], cfg: Any, ctx: TaskContext, database_url: str
) -> list[str]:
    """One worker of the group's model search; its partition is the trials it ran."""
    from despina.jobs.optimize import run_group_worker
    from despina.jobs.study import rows_table

    ctx.progress(0, cfg.trials)
    started = time.time()
    if group.started_at is not None:  # the deadline counts from the group's start
        started = group.started_at.replace(tzinfo=group.started_at.tzinfo or UTC).timestamp()
    rows = run_group_worker(
        group.source,
        Path(ctx.output),
        cfg,
        name=cfg.study or group.name,
        partition=int(spec["worker"]),
        threads=max(1, int(group.resources.cpus)),
        started=started,
        database_url=database_url,
        on_finished=lambda n: ctx.progress(n, cfg.trials),
    )
    ctx.metrics["trials"] = len(rows)
    ctx.metrics["completed"] = sum(r["state"] == "COMPLETE" for r in rows)
    return write_partition(ctx, rows_table(rows))

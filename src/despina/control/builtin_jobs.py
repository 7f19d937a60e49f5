"""The built-in jobs as tasks: ``preprocess`` and ``predict`` per partition; ``audit`` and
``train`` over the whole source (their groups run as one partition); ``optimize``, whose
every partition is a worker of one model search over the whole source.

An image ``audit`` group of several partitions runs in two stages: a ``scan`` task per
partition decodes its images once into a shard (:mod:`despina.jobs.shards`), then one
``audit`` task reads every shard and audits the whole source from them."""

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
    if job == "audit":
        from despina.jobs.audit import audit

        if cfg.workers is None:  # a task uses the CPUs its group reserves, not the machine's
            cfg = cfg.model_copy(update={"workers": max(1, int(group.resources.cpus))})
        scanned = _read_shards(group, database_url) if spec.get("step") == "audit" else None
        report = audit(group.source, ctx.output / "audit", cfg, progress=_Progress(ctx),
                       scanned=scanned)  # fmt: skip
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


def job_parts(job: str | None, source: str, partitions: int) -> list[dict[str, Any]]:
    """The partitions a group's tasks get when it starts."""
    if job in WORKER_JOBS:
        return worker_parts(partitions)
    if job in STAGED_JOBS and partitions > 1:
        return staged_parts(plan(source, partitions))
    return plan(source, partitions)


def staged_parts(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A staged job's partitions: the source's pieces scanned in stage 0, then one task of
    stage 1 that audits the whole source from their shards."""
    return [*({**p, "stage": 0, "step": "scan"} for p in parts), {"stage": 1, "step": "audit"}]


def _scan_shard(group: TaskGroup, spec: dict[str, Any], cfg: Any, ctx: TaskContext) -> list[str]:
    from despina.jobs.audit import auto_image_size
    from despina.jobs.shards import scan_shard

    records = records_for(group.source, spec)
    ctx.progress(0, len(records))
    size = cfg.image_size or auto_image_size(records, cfg.model.depth, cfg.max_pixels)
    table = scan_shard(records, size, cfg.max_pixels, on_done=ctx.advance)
    ctx.metrics["unreadable"] = table.num_rows - table.column("load_defect").null_count
    return write_partition(ctx, table)


def _read_shards(group: TaskGroup, database_url: str) -> Any:
    """The ids and merged scan of the group's stage-0 shards, in partition order; each
    opened with the context of the attempt that wrote it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from despina.control.runtime import output_keyring, partition_context
    from despina.control.settings import worker_seals
    from despina.control.store import Store
    from despina.jobs.shards import merge_shards
    from despina.security.envelope import read_artifact

    store = Store(database_url, migrate_schema=False)
    try:
        scans = sorted(
            (t for t in store.list_tasks(group=group.name) if t.stage == 0),
            key=lambda t: t.partition,
        )
    finally:
        store.close()
    shards = []
    for task in scans:
        if not task.outputs:
            raise TaskError(f"scan task {task.id} (partition {task.partition}) wrote no shard")
        data = read_artifact(
            task.outputs[0], output_keyring(),
            partition_context(group.name, task.partition, task.attempt), sealed=worker_seals(),
        )  # fmt: skip
        shards.append(pq.read_table(pa.BufferReader(data)))
    return merge_shards(shards)


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

"""The built-in jobs as tasks: ``preprocess`` and ``predict`` per partition; ``audit`` and
``train`` over the whole source (their groups run as one partition)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from despina.control.models import TaskGroup
from despina.control.partitions import records_for
from despina.control.runtime import TaskContext, write_partition
from despina.core.config import AuditConfig
from despina.core.errors import ConfigError
from despina.jobs.batch import (
    PredictConfig,
    PreprocessConfig,
    TrainJobConfig,
    predict_records,
    preprocess_records,
    train_model,
)

WHOLE_SOURCE_JOBS = frozenset({"audit", "train"})

CONFIGS: dict[str, type[Any]] = {
    "preprocess": PreprocessConfig,
    "predict": PredictConfig,
    "train": TrainJobConfig,
    "audit": AuditConfig,
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


def run_builtin(job: str, group: TaskGroup, spec: dict[str, Any], ctx: TaskContext) -> list[str]:
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
    if job == "audit":
        from despina.jobs.audit import audit

        if cfg.workers is None:  # a task uses the CPUs its group reserves, not the machine's
            cfg = cfg.model_copy(update={"workers": max(1, int(group.resources.cpus))})
        report = audit(group.source, ctx.output / "audit", cfg, progress=_Progress(ctx))
        ctx.metrics.update(
            {"health_score": report.health, **{k: int(v) for k, v in report.counts.items()}}
        )
        return [str(Path(report.report_html).parent)]
    raise ConfigError(f"unknown job {job!r}")

"""The dispatcher a worker runs: one task, start to finish, with its log, progress and output.

A task's code is a built-in job (:mod:`despina.control.builtin_jobs`) or a user script,
which runs in its own process with only its group's environment
(:mod:`despina.control.script_host`). What the code sees is :mod:`despina.control.runtime`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from despina.control.builtin_jobs import WHOLE_SOURCE_JOBS, run_builtin
from despina.control.group_env import open_env
from despina.control.models import Task, TaskGroup
from despina.control.runtime import TaskContext, output_keyring, seal_tree, write_partition
from despina.control.script_host import (
    DEFAULT_TASK_MEMORY_GB,
    run_in_child,
    sandbox_for,
    script_env,
)
from despina.control.store import Store
from despina.core.errors import DespinaError, TaskError
from despina.core.processes import peak_rss_mib, reset_peak_rss


def _owner_only(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


@contextlib.contextmanager
def _task_environment(log_path: Path, env: dict[str, str]) -> Iterator[logging.Logger]:
    """Send stdout, stderr and logging to the task's log file; set its env; undo after."""
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    with open(log_path, "a", buffering=1, encoding="utf-8", opener=_owner_only) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        old_level = root.level
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                yield logging.getLogger("despina.task")
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def execute(store: Store, task_id: int, where: str = "") -> dict[str, Any]:
    """Run one task to the end; return ``{"outputs", "metrics", "done", "total"}``.
    ``where``: the Ray node (or other place) it runs on, for its log's first line.

    Raises :class:`TaskError` with a one-line reason when the task's code fails; the
    full traceback is in the task's log.
    """
    task = store.get_task(task_id)
    group = store.get_group(task.group)
    group = group.model_copy(update={"env": open_env(group.name, group.env, output_keyring())})
    spec = store.task_spec(task_id)
    log_path = Path(task.log_path)
    with _task_environment(log_path, group.env) as log:
        log.info(
            "task %d (group %s, partition %d) attempt %d starts at %s on %s (pid %d)%s",
            task.id,
            group.name,
            task.partition,
            task.attempt,
            datetime.now(UTC).isoformat(timespec="seconds"),
            socket.gethostname(),
            os.getpid(),
            f" {where}" if where else "",
        )
        ctx = TaskContext(
            task_id=task.id,
            partition=task.partition,
            attempt=task.attempt,
            group=group.name,
            source=group.source,
            output=Path(group.output),
            config=dict(group.config),
            env=dict(group.env),
            logger=log,
            _report=lambda done, total: store.report_progress(task.id, done, total),
            _total=spec.get("total"),
        )
        measured = group.job is not None and reset_peak_rss()  # a script runs in a child
        t0 = time.perf_counter()
        try:
            outputs = _run(group, task, spec, ctx, store.url)
        except BaseException as exc:
            log.error("task failed:\n%s", traceback.format_exc())
            if isinstance(exc, TaskError | DespinaError):
                reason = str(exc)
            else:
                reason = f"{type(exc).__name__}: {exc}"
            raise TaskError(f"{reason} (traceback in {log_path})") from None
        elapsed = time.perf_counter() - t0
        # The scheduler records done = total with SUCCEEDED: no progress write here.
        total = ctx._total if ctx._total is not None else ctx.done
        ctx.metrics.setdefault("seconds", round(elapsed, 3))
        ctx.metrics.setdefault("items", total)
        if measured:  # the worker's peak memory while this task ran
            ctx.metrics.setdefault("peak_rss_mib", peak_rss_mib())
        log.info("task %d succeeded in %.2fs: %s", task.id, elapsed, outputs)
        return {"outputs": outputs, "metrics": ctx.metrics, "done": total, "total": total}


def _run(
    group: TaskGroup, task: Task, spec: dict[str, Any], ctx: TaskContext, database_url: str
) -> list[str]:
    if group.job is not None:
        outputs = run_builtin(group.job, group, spec, ctx, database_url)
        if group.job in WHOLE_SOURCE_JOBS:
            seal_tree(outputs)
        return outputs
    if group.script is None:  # GroupSpec guarantees job or script
        raise TaskError(f"group {group.name} has neither a job nor a script")
    memory_gb = group.resources.memory_gb or DEFAULT_TASK_MEMORY_GB
    job = {
        "script": group.script,
        "spec": spec,
        "memory_bytes": int(memory_gb * 2**30),
        "sandbox": sandbox_for(spec, Path(ctx.output)),
        "context": {
            "task_id": ctx.task_id,
            "partition": ctx.partition,
            "attempt": ctx.attempt,
            "group": ctx.group,
            "source": ctx.source,
            "output": ctx.output,
            "config": ctx.config,
            "env": ctx.env,
            "_total": ctx._total,
        },
    }
    kind, result = run_in_child(job, script_env(group.env), Path(task.log_path), ctx)
    if kind == "rows":
        return write_partition(ctx, result)
    if result is not None and not isinstance(result, list):
        ctx.metrics["result"] = result
    return [str(p) for p in result] if isinstance(result, list) else []

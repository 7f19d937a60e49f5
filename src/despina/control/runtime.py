"""What runs inside a worker: one task, start to finish, with its log, progress and output.

A task's code is a built-in job or a user script; a script runs in its own process with
only its group's environment (:mod:`despina.control.script_host`). A script defines either
``process(batch, context)``, called with this task's partition and returning rows (an
iterable of dicts, a pandas DataFrame or an Arrow table), or ``main(context)``. Rows are
written as one Parquet file per partition, atomically (temporary file, then rename), so a
re-run of a partition replaces its file and never duplicates or drops rows. When the plane
encrypts, every output is sealed (:mod:`despina.security.envelope`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from despina.control.models import Task, TaskGroup
from despina.control.store import Store
from despina.core.errors import DespinaError, TaskError
from despina.security.envelope import Keyring, default_keyring, is_sealed, write_sealed

logger = logging.getLogger(__name__)


@dataclass
class TaskContext:
    """Handed to a script's ``process``/``main``: where to write, what to report, the config."""

    task_id: int
    partition: int
    attempt: int
    group: str
    source: str
    output: Path
    config: dict[str, Any]
    env: dict[str, str]
    logger: logging.Logger
    metrics: dict[str, Any] = field(default_factory=dict)
    _report: Callable[[int, int | None], None] | None = field(default=None, repr=False)
    _done: int = field(default=0, repr=False)
    _total: int | None = field(default=None, repr=False)
    _last: float = field(default=0.0, repr=False)

    def progress(self, done: int, total: int | None = None) -> None:
        """Set items done (and the total); written to the store at most twice a second."""
        self._done = done
        if total is not None:
            self._total = total
        now = time.monotonic()
        if self._report is not None and (now - self._last >= 0.5 or done == self._total):
            self._last = now
            self._report(done, self._total)

    def advance(self, items: int = 1) -> None:
        self.progress(self._done + items)

    @property
    def done(self) -> int:
        return self._done


def part_path(output: Path, partition: int) -> Path:
    return output / f"part-{partition:05d}.parquet"


def write_partition(ctx: TaskContext, table: pa.Table) -> list[str]:
    """This task's rows as ``part-0000N.parquet`` under the group's output; its outputs."""
    path = part_path(ctx.output, ctx.partition)
    write_atomic(table, path)
    ctx.metrics["rows"] = table.num_rows
    return [str(path)]


def output_keyring() -> Keyring | None:
    """The keyring that seals what tasks write, or None when the plane does not encrypt
    (the executor sets ``DESPINA_ENCRYPT`` and ``DESPINA_KEY_FILE`` for its workers)."""
    if os.environ.get("DESPINA_ENCRYPT") != "on":
        return None
    return default_keyring()


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write Parquet (sealed when the plane encrypts) to a temporary name in the same
    folder, then rename over ``path``."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_sealed(path, sink.getvalue().to_pybytes(), output_keyring())


def seal_tree(paths: list[str]) -> None:
    """Seal, in place, every file under the folders a whole-source job wrote (models,
    reports, cleaned manifests) when the plane encrypts."""
    ring = output_keyring()
    if ring is None:
        return
    for top in paths:
        for path in sorted(Path(top).rglob("*")):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if not is_sealed(data):
                    write_sealed(path, data, ring)


def to_table(rows: Any) -> pa.Table:
    """Rows from a script (dicts, a DataFrame, an Arrow table) as an Arrow table."""
    if isinstance(rows, pa.Table):
        return rows
    if rows is None:
        raise TaskError("process() returned None; return rows (dicts, a DataFrame or a table)")
    try:
        import pandas as pd

        if isinstance(rows, pd.DataFrame):
            return pa.Table.from_pandas(rows, preserve_index=False)
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    try:
        return pa.Table.from_pylist(list(rows))
    except (TypeError, AttributeError, pa.ArrowInvalid) as exc:
        raise TaskError(
            f"process() must return dicts, a DataFrame or an Arrow table: {exc}"
        ) from exc


def load_script(path: str) -> Any:
    """Import a user script as a fresh module (its syntax errors surface here)."""
    file = Path(path)
    if not file.is_file():
        raise TaskError(f"script {file} does not exist")
    spec = importlib.util.spec_from_file_location(f"despina_script_{abs(hash(path))}", file)
    if spec is None or spec.loader is None:
        raise TaskError(f"cannot import {file} as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _task_environment(log_path: Path, env: dict[str, str]) -> Iterator[logging.Logger]:
    """Send stdout, stderr and logging to the task's log file; set its env; undo after."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    with open(log_path, "a", buffering=1, encoding="utf-8") as fh:
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


def execute(store: Store, task_id: int) -> dict[str, Any]:
    """Run one task to the end; return ``{"outputs", "metrics", "done", "total"}``.

    Raises :class:`TaskError` with a one-line reason when the task's code fails; the
    full traceback is in the task's log.
    """
    task = store.get_task(task_id)
    group = store.get_group(task.group)
    spec = store.task_spec(task_id)
    log_path = Path(task.log_path)
    with _task_environment(log_path, group.env) as log:
        log.info(
            "task %d (group %s, partition %d) attempt %d starts at %s",
            task.id,
            group.name,
            task.partition,
            task.attempt,
            datetime.now(UTC).isoformat(timespec="seconds"),
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
        t0 = time.perf_counter()
        try:
            outputs = _run(group, task, spec, ctx)
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
        log.info("task %d succeeded in %.2fs: %s", task.id, elapsed, outputs)
        return {"outputs": outputs, "metrics": ctx.metrics, "done": total, "total": total}


def _run(group: TaskGroup, task: Task, spec: dict[str, Any], ctx: TaskContext) -> list[str]:
    if group.job is not None:
        from despina.control.builtin_jobs import WHOLE_SOURCE_JOBS, run_builtin

        outputs = run_builtin(group.job, group, spec, ctx)
        if group.job in WHOLE_SOURCE_JOBS:
            seal_tree(outputs)
        return outputs
    assert group.script is not None  # GroupSpec guarantees job or script
    from despina.control.script_host import run_in_child, script_env

    job = {
        "script": group.script,
        "spec": spec,
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

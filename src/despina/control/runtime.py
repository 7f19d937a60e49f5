"""What a task's code sees: its context, and how its rows and files are written.

A leaf: built-in jobs and the script host import it; it imports neither. A script defines
either ``process(batch, context)``, called with this task's partition and returning rows
(an iterable of dicts, a pandas DataFrame or an Arrow table), or ``main(context)``. Rows
are written as one Parquet file per partition, atomically (temporary file, then rename),
so a re-run of a partition replaces its file and never duplicates or drops rows. When the
plane encrypts, every output is sealed (:mod:`despina.security.envelope`).
"""

from __future__ import annotations

import logging
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from despina.control.settings import worker_seals
from despina.core.errors import TaskError
from despina.security.envelope import (
    Keyring,
    default_keyring,
    file_context,
    is_sealed,
    write_sealed,
)

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
    try:
        write_atomic(table, path, partition_context(ctx.group, ctx.partition, ctx.attempt))
    except OSError as exc:
        raise TaskError(
            f"cannot write {path}: {exc.strerror or exc}. The group's output folder "
            f"{ctx.output} must be storage every node of the cluster can write"
        ) from None
    ctx.metrics["rows"] = table.num_rows
    return [str(path)]


def output_keyring() -> Keyring | None:
    """The keyring that seals what tasks write, or None when the plane does not encrypt
    (the executor sets ``DESPINA_ENCRYPT`` and ``DESPINA_KEY_FILE`` for its workers)."""
    if not worker_seals():
        return None
    return default_keyring()


def partition_context(group: str, partition: int, attempt: int) -> str:
    """What a partition's sealed file is bound to: another group's, partition's or
    attempt's file (a stale worker's late write) put in its place fails to open."""
    return f"group {group} partition {partition} attempt {attempt}"


def write_atomic(table: pa.Table, path: Path, context: str = "") -> None:
    """Write Parquet (sealed, bound to ``context``, when the plane encrypts) to a temporary
    name in the same folder, then rename over ``path``."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_sealed(path, sink.getvalue().to_pybytes(), output_keyring(), context)


def seal_tree(paths: list[str]) -> None:
    """Seal, in place, every file under the folders a whole-source job wrote (models,
    reports, cleaned manifests) when the plane encrypts; each is bound to its path within
    the folder (``model/model.onnx``), so a file renamed or moved in fails to open."""
    ring = output_keyring()
    if ring is None:
        return
    for top in paths:
        base = Path(top).parent
        for path in sorted(Path(top).rglob("*")):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if not is_sealed(data):
                    write_sealed(path, data, ring, file_context(path.relative_to(base)))


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


def read_script(path: str) -> str:
    """A user script's source, read before the script's sandbox closes its folder."""
    file = Path(path)
    if not file.is_file():
        raise TaskError(f"script {file} does not exist")
    return file.read_text(encoding="utf-8")


def load_script(path: str, source: str) -> Any:
    """Run a user script's ``source`` as a fresh module (its syntax errors surface here)."""
    module = types.ModuleType(f"despina_script_{abs(hash(path))}")
    module.__file__ = path
    exec(compile(source, path, "exec"), module.__dict__)
    return module

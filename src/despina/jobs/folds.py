"""The audit's cross-validation as tasks of a group: each fold of each round trains from
the scan's shards in a task of its own and writes its held-out rows' outputs as a table;
the audit task puts each round's tables back together as the one-task audit's
cross-validation. A fold of a later round first runs the label check on the round before,
so every fold of it leaves out the same rows, and continues that round's model of its fold,
which the fold's table carries."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa

from despina.audit.checks import LabelCheck, default_registry
from despina.audit.runner import select_checks
from despina.core.config import AuditConfig
from despina.core.errors import DataError
from despina.jobs.audit import Prepared
from despina.jobs.rounds import label_exclusions, round_seed, round_share, use_round
from despina.jobs.shards import column_matrix, matrix_column
from despina.training.crossval import (
    CrossValResult,
    FoldOutput,
    assemble,
    fold_splits,
    run_fold,
)
from despina.training.trainer import EpochCallback, Weights

#: A fold table's columns after ``row`` (the held-out rows), in :data:`FoldOutput` order.
FOLD_COLUMNS = ("probs", "embeddings", "neighbor_sims", "neighbor_idx", "same_label",
                "pred_label")  # fmt: skip


#: Schema metadata keys of a fold table: its fold's number, its model's weights (.npz).
FOLD_KEY, WEIGHTS_KEY = b"despina.fold", b"despina.weights"


def fold_table(fold: int, held_out: np.ndarray, out: FoldOutput, model: Weights) -> pa.Table:
    """Fold ``fold``'s outputs for its held-out rows (indices into the readable rows), and
    its model's weights, which the next round continues from."""
    columns = {name: matrix_column(a) for name, a in zip(FOLD_COLUMNS, out, strict=True)}
    table = pa.table({"row": pa.array(held_out, pa.int64()), **columns})
    buf = io.BytesIO()
    np.savez(buf, **cast(dict[str, Any], model))
    return table.replace_schema_metadata({FOLD_KEY: str(fold), WEIGHTS_KEY: buf.getvalue()})


def _meta(table: pa.Table, key: bytes) -> bytes:
    return (table.schema.metadata or {})[key]


def _weights(table: pa.Table) -> Weights:
    with np.load(io.BytesIO(_meta(table, WEIGHTS_KEY))) as archive:
        return {k: archive[k] for k in archive.files}


def read_round(tables: Sequence[pa.Table]) -> CrossValResult:
    """One round's cross-validation from the tables of its folds, in any order; refuses
    folds that do not hold out every readable row exactly once."""
    tables = sorted(tables, key=lambda t: int(_meta(t, FOLD_KEY)))
    held = [t.column("row").to_numpy() for t in tables]
    outputs = [tuple(column_matrix(t, c) for c in FOLD_COLUMNS) for t in tables]
    rows = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    if not np.array_equal(rows, np.arange(len(rows))):
        raise DataError(
            f"the fold tables of this round cover {len(np.unique(rows))} distinct rows in "
            f"{len(rows)}: they come from different runs; retry the group's fold tasks"
        )
    return assemble(held, outputs, [_weights(t) for t in tables])  # type: ignore[arg-type]


def train_fold(
    prep: Prepared,
    cfg: AuditConfig,
    round_: int,
    fold: int,
    earlier: CrossValResult | None,
    threads: int,
    on_epoch: EpochCallback | None = None,
) -> pa.Table:
    """Train fold ``fold`` of round ``round_`` on ``prep``'s readable images and return its
    table; ``earlier``: the round before (None in the first), whose label issues this
    round's training leaves out, as the one-task audit does."""
    ctx = prep.ctx
    assert ctx.labels is not None
    exclude = None
    if round_ > 0:
        if earlier is None:
            raise DataError(f"round {round_} of the folds needs the round before it")
        checks = select_checks(default_registry(), cfg.checks)
        use_round(ctx, earlier)
        exclude = label_exclusions(ctx, next(c for c in checks if isinstance(c, LabelCheck)))
    k = len(ctx.class_names)
    seed = round_seed(cfg, round_)
    splits = fold_splits(ctx.labels, k, cfg.folds, seed, exclude, ctx.class_names)
    train_idx, test_idx = splits[fold]
    share = round_share(cfg, None, round_)
    start = earlier.weights[fold] if earlier is not None and share is not None else None
    out, model = run_fold(prep.x, ctx.labels, train_idx, test_idx, k, cfg.model, cfg.train,
                          seed + fold, threads, on_epoch, None, start, share or 1.0)  # fmt: skip
    return fold_table(fold, test_idx, out, model)

"""The check plug-in contract: what a check needs (AuditContext) and what it returns (CheckResult).

Every check reports the same four things, so reports, sorting and combining stay generic:
a score per row in [0, 1] (low = bad), a flag per row, one score for the dataset, and a
details payload specific to the check.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np

from despina.audit.image_stats import ImageStats
from despina.core.errors import CheckError
from despina.core.vectors import neighbor_index, unit_rows
from despina.data.sequences import SequenceSet
from despina.data.tables import Table
from despina.preprocessing.table import TablePipeline

#: Inputs a check may require; a check whose inputs are absent is skipped with a reason.
INPUTS = frozenset({"labels", "pred_probs", "embeddings", "image_stats", "table", "sequences"})


@dataclass(frozen=True)
class CheckResult:
    """The uniform result of one check over all ``n`` samples."""

    name: str
    scores: np.ndarray  # float64 (n,), in [0, 1], low = bad
    flags: np.ndarray  # bool (n,)
    score: float  # dataset-level, in [0, 1], high = healthy
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scores.shape != self.flags.shape or self.scores.ndim != 1:
            raise CheckError(f"check {self.name}: scores and flags must be 1-D of equal length")
        if len(self.scores) and not (
            np.all(np.isfinite(self.scores)) and self.scores.min() >= 0 and self.scores.max() <= 1
        ):
            raise CheckError(f"check {self.name}: scores must be finite and within [0, 1]")
        if not 0.0 <= self.score <= 1.0:
            raise CheckError(f"check {self.name}: dataset score {self.score} is outside [0, 1]")

    @property
    def count(self) -> int:
        return int(self.flags.sum())


@dataclass
class AuditContext:
    """Inputs shared by all checks, with expensive derived data computed once.

    Per-sample arrays cover all ``n`` samples; model outputs (``pred_probs``,
    ``embeddings``) and ``labels`` cover only the decodable ones, listed in ``valid_idx``.
    """

    ids: list[str]
    given_labels: list[str]
    class_names: list[str]
    valid: np.ndarray  # bool (n,)
    load_defects: list[str | None]
    labels: np.ndarray | None = None  # int (m,), index into class_names
    pred_probs: np.ndarray | None = None  # (m, K)
    embeddings: np.ndarray | None = None  # (m, D)
    image_stats: ImageStats | None = None
    #: A table's raw cells and schema (table audits): what the value, row-duplicate and
    #: table outlier checks read.
    table: Table | None = None
    #: The table's unclipped model input, when the job already made it (``table_features``).
    table_matrix: np.ndarray | None = None
    #: Series as read (sequence audits): what the sequence value and duplicate checks read.
    sequences: SequenceSet | None = None
    #: A forecaster's absolute one-step errors per (series, channel) of the long series
    #: (sequence audits), in the series' standardized units.
    residuals: dict[tuple[int, int], np.ndarray] | None = None
    #: Out-of-fold neighbour graph over valid rows: for each sample, cosine similarities and
    #: row indices of its nearest *training* samples in the embedding space of the fold model
    #: that did not see it. Computed from ``embeddings`` when not given.
    oof_neighbors: tuple[np.ndarray, np.ndarray] | None = None
    #: Out-of-fold cosine distances (m, k), ascending, from each valid row to its nearest
    #: training samples with its own label. Computed from ``embeddings`` when not given.
    oof_same_label: np.ndarray | None = None
    #: The same to the nearest training samples of the label the fold model predicts.
    oof_pred_label: np.ndarray | None = None
    #: Threads a check may spread work over where the result is the same on any number.
    threads: int = 1

    @property
    def n(self) -> int:
        return len(self.ids)

    @cached_property
    def valid_idx(self) -> np.ndarray:
        return np.flatnonzero(self.valid)

    def has(self, name: str) -> bool:
        return getattr(self, name) is not None

    def expand(self, values: np.ndarray, fill: float | bool) -> np.ndarray:
        """Spread values over the valid rows to all ``n`` rows, ``fill`` elsewhere."""
        out = np.full(self.n, fill, dtype=np.asarray(values).dtype)
        out[self.valid_idx] = values
        return out

    @cached_property
    def table_features(self) -> np.ndarray:
        """The table's rows as the model sees them (imputed, robustly scaled numerics,
        missing indicators, category codes), fitted on this table, but not clipped."""
        if self.table_matrix is not None:
            return self.table_matrix
        if self.table is None:
            raise CheckError("a table is required")
        pipeline = TablePipeline(self.table.schema).fit(self.table.frame)
        return pipeline.transform(self.table.frame, clip=False)

    @property
    def unit_embeddings(self) -> np.ndarray:
        """L2-normalized float32 embeddings (cosine similarity = dot product)."""
        if self.embeddings is None:
            raise CheckError("embeddings are required")
        return unit_rows(self.embeddings)

    @property
    def neighbors(self) -> tuple[np.ndarray, np.ndarray]:
        """The out-of-fold neighbour graph, or 20 nearest neighbours in ``embeddings``."""
        if self.oof_neighbors is not None:
            return self.oof_neighbors
        return self._embedding_knn

    @cached_property
    def _embedding_knn(self) -> tuple[np.ndarray, np.ndarray]:
        return knn(self.unit_embeddings, 20)

    def class_distances(self, predicted: bool) -> np.ndarray:
        """Out-of-fold distances to the nearest samples of each row's given label (or, with
        ``predicted``, of the label the model predicts for it); computed from
        ``embeddings`` when cross-validation did not provide them."""
        given = self.oof_pred_label if predicted else self.oof_same_label
        if given is not None:
            return given
        if self.labels is None:
            raise CheckError("labels are required")
        query = self.labels
        if predicted:
            if self.pred_probs is None:
                raise CheckError("pred_probs are required")
            query = self.pred_probs.argmax(axis=1)
        return _class_knn(self.unit_embeddings, self.labels, query, 10)


def _class_knn(
    unit: np.ndarray, labels: np.ndarray, query_labels: np.ndarray, k: int
) -> np.ndarray:
    """Cosine distances (ascending) from each row to the ``k`` nearest *other* rows whose
    label is that row's ``query_labels`` entry; fewer rows repeat the farthest, none give
    the largest distance, 2. The fallback for checks run without cross-validation, which
    computes the same out of fold (``training.crossval.same_label_distances``; the audit
    layer may not import training)."""
    out = np.full((len(unit), k), 2.0, np.float32)
    for c in np.unique(query_labels):
        rows, members = np.flatnonzero(query_labels == c), np.flatnonzero(labels == c)
        kk = min(k, len(members))
        if kk == 0:
            continue
        index = neighbor_index(unit[members])
        sims, idx = index.search(np.ascontiguousarray(unit[rows]), kk + 1)
        # Drop each row itself where it is a member (exact duplicates can tie with it).
        own = members[np.clip(idx, 0, len(members) - 1)] == rows[:, None]
        for r, row in enumerate(rows):
            d = np.clip(1.0 - sims[r][~own[r] & (idx[r] >= 0)][:kk], 0.0, 2.0)
            if d.size:
                out[row, : d.size] = d
                out[row, d.size :] = d[-1]
    return out


def knn(unit: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product k-nearest neighbours with FAISS (exact up to ``exact_rows()`` rows),
    dropping each point itself."""
    m = len(unit)
    k = min(k, m - 1)
    if k <= 0:
        return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
    sims, idx = neighbor_index(unit).search(np.ascontiguousarray(unit), k + 1)
    # Drop self (usually column 0, but exact duplicates can tie with it) and misses.
    keep = (idx != np.arange(m)[:, None]) & (idx >= 0)
    out_s = np.zeros((m, k), np.float32)
    out_i = np.zeros((m, k), np.int64)
    for r in range(m):
        s, i = sims[r][keep[r]][:k], idx[r][keep[r]][:k]
        out_s[r, : len(s)], out_i[r, : len(i)] = s, i
    return out_s, out_i


class Check(ABC):
    """A quality check: declares its name, modalities, required inputs and default state."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    modalities: ClassVar[frozenset[str]] = frozenset({"image"})
    requires: ClassVar[frozenset[str]] = frozenset()
    default: ClassVar[bool] = True

    def empty(self, ctx: AuditContext) -> CheckResult:
        """The result when there is nothing to evaluate: every row fine."""
        return CheckResult(self.name, np.ones(ctx.n), np.zeros(ctx.n, bool), 1.0, {})

    def missing_inputs(self, ctx: AuditContext) -> list[str]:
        return sorted(r for r in self.requires if not ctx.has(r))

    @abstractmethod
    def run(self, ctx: AuditContext) -> CheckResult:
        """Inspect the context and return one uniform result."""


def robust_z(values: np.ndarray, floor: float, tail: float | None = None) -> np.ndarray:
    """(x - median) / (1.4826 * MAD), with the scale floored so uniform data isn't oversensitive.

    ``tail`` (a quantile such as 0.9): the scale is also at least what that quantile implies
    for a normal distribution, so a long upper tail (classes that overlap) widens it, where
    the MAD alone would call a tenth of such a dataset extreme.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    med = float(np.median(finite))
    scale = max(float(np.median(np.abs(finite - med))) * 1.4826, floor)
    if tail is not None:
        spread = float(np.quantile(finite, tail)) - med
        scale = max(scale, spread / NormalDist().inv_cdf(tail))
    return (values - med) / scale


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))

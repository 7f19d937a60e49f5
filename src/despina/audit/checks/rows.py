"""Table rows: exact, near and conflicting duplicates, and outliers from raw features and
the model's embeddings together.

Duplicates. Exact duplicates share every feature cell (and the label); conflicting
duplicates share every feature cell (or are near-duplicates) but not the label, so at
most one of them can be right. Near-duplicates differ in no numeric column by more than
1% of that column's span (its 1st-99th percentile span, at least a tenth of its
range), and in no categorical cell or missing cell
(a Chebyshev distance over tolerance-scaled features, searched with FAISS). Within each
set the first row is kept; the others are flagged, as for images.

Outliers. An isolation forest on the raw features (scaled but not clipped; Liu, Ting &
Zhou, ICDM 2008) gives a robust z-score; with a model's out-of-fold embeddings the image
outlier check's z joins it, and a row is as unusual as the more unusual of the two views
finds it: on some tables a rare region of feature space is what is wrong, on others a row
the model cannot place among its class. The mean distance to the nearest raw rows was
measured as a third view and left out: anomalies that form their own dense cluster (the
Shuttle benchmark's) sit close to each other and it ranks them as ordinary.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from despina.audit.base import AuditContext, Check, CheckResult, robust_z, sigmoid
from despina.audit.checks.outlier import OutlierCheck
from despina.core.vectors import neighbor_index
from despina.data.tables import column_span, is_missing, numeric_values

#: Near-duplicate tolerance, as a share of each numeric column's 1st-99th percentile span.
NEAR_TOLERANCE = 0.01
NEAR_CANDIDATES = 8


def _feature_keys(ctx: AuditContext) -> list[str]:
    """One string per row that equal rows share: numbers compared as numbers ("1" and
    "1.0" are the same value), other cells as text, missing cells alike."""
    assert ctx.table is not None
    features = ctx.table.features.astype(object)
    cells = features.where(~features.isna(), "\x00missing")
    for name in ctx.table.schema.numeric:
        v = numeric_values(ctx.table.frame[name])
        cells[name] = np.where(np.isnan(v), cells[name].astype(str), v.astype(str))
    return ["\x1f".join(map(str, row)) for row in cells.itertuples(index=False, name=None)]


def _scaled_features(ctx: AuditContext) -> np.ndarray:
    """The rows with each numeric column divided by its near-duplicate tolerance and each
    categorical or missing cell far from any other value: rows within 1 of each other in
    every column are near-duplicates."""
    assert ctx.table is not None
    frame, schema = ctx.table.frame, ctx.table.schema
    parts: list[np.ndarray] = []
    for name in schema.numeric:
        v = numeric_values(frame[name])
        tol = NEAR_TOLERANCE * column_span(v)
        # A missing or non-finite cell matches only another such cell.
        parts.append(np.where(np.isfinite(v), v / tol, -1e9))
    for name in schema.categorical:
        col = frame[name]
        codes = col.astype(str).astype("category").cat.codes.to_numpy(np.float64)
        parts.append(np.where(is_missing(col), -1.0, codes) * 1e6)
    return np.stack(parts, axis=1)


def within_tolerance(x: np.ndarray, k: int = NEAR_CANDIDATES) -> np.ndarray:
    """(p, 2) pairs of rows of ``x`` (features already divided by their tolerance) whose
    largest difference is at most 1. Candidates are each row's ``k`` nearest rows in L2
    (FAISS, BLAS-fast); the Chebyshev bound is then checked exactly."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) < 2:
        return np.zeros((0, 2), np.int64)
    kk = min(k, len(x))
    _, idx = neighbor_index(x, "l2").search(x, kk)
    a = np.repeat(np.arange(len(x)), kk)
    b = idx.ravel()
    ok = (b >= 0) & (b != a)
    a, b = a[ok], b[ok]
    near = np.abs(x[a] - x[b]).max(axis=1) <= 1.0
    return np.stack([a[near], b[near]], axis=1)


class RowDuplicateCheck(Check):
    name: ClassVar[str] = "duplicate"
    description: ClassVar[str] = "exact, near and conflicting duplicate rows"
    modalities: ClassVar[frozenset[str]] = frozenset({"table"})
    requires: ClassVar[frozenset[str]] = frozenset({"table"})

    def run(self, ctx: AuditContext) -> CheckResult:
        n = ctx.n
        if n == 0:
            return self.empty(ctx)
        return duplicate_sets(
            self.name, _feature_keys(ctx), _scaled_features(ctx), ctx.given_labels
        )


def duplicate_sets(
    name: str, keys: list[str], scaled: np.ndarray, labels: list[str]
) -> CheckResult:
    """Rows with equal ``keys`` (exact copies), or whose ``scaled`` features lie within 1 of
    each other in every column (near copies, searched among rows with distinct keys), form
    sets; the first row of each set is kept, the others flagged, and each row's kind is
    ``conflicting`` (the set's labels differ), ``exact`` (another row has its key) or
    ``near``."""
    n = len(keys)
    first: dict[str, int] = {}
    exact = []
    for i, key in enumerate(keys):
        j = first.setdefault(key, i)
        if j != i:
            exact.append((j, i))
    rep = np.array(sorted(set(first.values())), np.int64)
    near = rep[within_tolerance(scaled[rep])] if len(rep) else np.zeros((0, 2), np.int64)
    pairs = np.array(exact + [tuple(p) for p in near], dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    group_of = np.full(n, -1, np.int64)
    flags = np.zeros(n, bool)
    kind = [""] * n
    groups: list[list[int]] = []
    for members in _members(component, np.bincount(component)):
        group_of[members] = len(groups)
        groups.append(members)
        flags[members[1:]] = True
        conflicting = len({labels[i] for i in members}) > 1
        shared = Counter(keys[i] for i in members)
        for i in members:
            kind[i] = "conflicting" if conflicting else "exact" if shared[keys[i]] > 1 else "near"
    return CheckResult(
        name=name,
        scores=np.where(group_of >= 0, np.where(flags, 0.0, 0.5), 1.0),
        flags=flags,
        score=float(1.0 - flags.mean()) if n else 1.0,
        details={"groups": groups, "group_of": group_of, "kind": kind},
    )


def _members(component: np.ndarray, sizes: np.ndarray) -> list[list[int]]:
    order = np.argsort(component, kind="stable")
    bounds = np.cumsum(sizes)[:-1]
    return [g.tolist() for g in np.split(order, bounds) if len(g) > 1]


def isolation_z(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """Robust z-scores of isolation-forest path lengths (short path = unusual)."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=300, max_samples=128, random_state=seed)
    forest.fit(features)
    return robust_z(-forest.score_samples(features), floor=1e-3)


class TableOutlierCheck(Check):
    name: ClassVar[str] = "outlier"
    description: ClassVar[str] = "rows unlike the rest of the table"
    modalities: ClassVar[frozenset[str]] = frozenset({"table"})
    requires: ClassVar[frozenset[str]] = frozenset({"table"})

    def __init__(self, threshold: float = 3.5, seed: int = 0) -> None:
        self.threshold = threshold
        self.seed = seed

    def run(self, ctx: AuditContext) -> CheckResult:
        if ctx.n < 3:
            return self.empty(ctx)
        z = isolation_z(ctx.table_features, self.seed)
        details: dict[str, np.ndarray] = {"z_raw": z.copy()}
        if ctx.embeddings is not None and len(ctx.valid_idx):
            model = OutlierCheck(threshold=self.threshold).run(ctx)
            z_model = model.details["z"]
            details["z_model"] = z_model
            z = np.maximum(z, z_model)
        flags = z > self.threshold
        return CheckResult(
            name=self.name,
            scores=sigmoid(self.threshold - z),
            flags=flags,
            score=float(1.0 - flags.mean()),
            details={"z": z, **details},
        )

"""Bad values in a table: missing cells, type violations, out-of-range numbers, rare or
unseen categories, per row; constant and near-constant columns for the dataset.

Out of range is decided against robust per-column bounds: the 1st and 99th percentiles
widened by three times their span (a Tukey fence on percentiles rather than quartiles, so
a skewed but genuine tail stays inside while a sentinel such as -999 or a unit slip of a
hundredfold falls outside, and up to 1% of a column's cells can be wrong without moving
the bounds; a nearly constant column's span is the size of its typical value). The
percentiles were chosen on one table, with a second looked at (benchmarks/tables.py says
which).

A category is rare when it occurs at most twice in a column whose categories otherwise
repeat (at least 20 rows per category on average): a typo or a new code, not an
identifier column.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from despina.audit.base import AuditContext, Check, CheckResult
from despina.data.tables import is_missing, numeric_values

#: Percentiles the range bounds start from, and how many spans beyond them are allowed.
RANGE_QUANTILES = (0.01, 0.99)
RANGE_SPANS = 3.0
#: A category seen at most this often is rare, in columns averaging this many rows a category.
RARE_COUNT = 2
REPEATING = 20
#: A column whose most common value covers this share of its rows is near-constant.
NEAR_CONSTANT = 0.99

#: The kinds of value finding, as written in ``samples.csv``'s ``defects`` column.
VALUE_KINDS = ("missing", "type", "range", "rare_category", "unseen_category")


def range_bounds(values: np.ndarray) -> tuple[float, float] | None:
    """(low, high) outside which a finite value is out of range; None for fewer than 20
    values. A column without spread between its percentiles (nearly constant) takes the
    size of its typical value, at least 1, as its span."""
    finite = values[np.isfinite(values)]
    if finite.size < 20:
        return None
    lo, hi = np.quantile(finite, RANGE_QUANTILES)
    span = float(hi - lo) or max(abs(float(np.median(finite))), 1.0)
    return float(lo - RANGE_SPANS * span), float(hi + RANGE_SPANS * span)


class ValueCheck(Check):
    name: ClassVar[str] = "values"
    description: ClassVar[str] = "missing, mistyped, out-of-range and rare values in a table"
    modalities: ClassVar[frozenset[str]] = frozenset({"table"})
    requires: ClassVar[frozenset[str]] = frozenset({"table"})

    def run(self, ctx: AuditContext) -> CheckResult:
        assert ctx.table is not None  # ensured by requires
        frame, schema = ctx.table.frame, ctx.table.schema
        n = len(frame)
        if n == 0:
            return self.empty(ctx)
        found: list[list[str]] = [[] for _ in range(n)]

        def mark(rows: np.ndarray, what: str) -> None:
            for r in np.flatnonzero(rows):
                found[r].append(what)

        constant, near_constant, bounds = [], [], {}
        for spec in schema.columns:
            col = frame[spec.name]
            missing = is_missing(col)
            mark(missing, f"missing:{spec.name}")
            present = col[~missing]
            top = present.astype(str).value_counts()
            if len(top) == 1:
                constant.append(spec.name)
            elif len(top) and n >= 100 and top.iloc[0] / n >= NEAR_CONSTANT:
                near_constant.append(spec.name)
            if spec.kind == "numeric":
                v = numeric_values(col)
                mark(~missing & ~np.isfinite(v), f"type:{spec.name}")
                b = range_bounds(v)
                if b is not None:
                    bounds[spec.name] = [round(b[0], 6), round(b[1], 6)]
                    with np.errstate(invalid="ignore"):
                        mark(np.isfinite(v) & ((v < b[0]) | (v > b[1])), f"range:{spec.name}")
            elif spec.categories is not None:
                allowed = set(spec.categories)
                text = col.astype(str).to_numpy()
                mark(~missing & ~np.isin(text, list(allowed)), f"unseen_category:{spec.name}")
            elif len(top) and len(present) / len(top) >= REPEATING:
                rare = set(top.index[top <= RARE_COUNT])
                if rare:
                    text = col.astype(str).to_numpy()
                    mark(~missing & np.isin(text, list(rare)), f"rare_category:{spec.name}")
        return findings_result(
            self.name,
            found,
            constant_columns=constant,
            near_constant_columns=near_constant,
            bounds=bounds,
        )


def findings_result(name: str, found: list[list[str]], **details: object) -> CheckResult:
    """Rows flagged by their findings (``kind:where``), each finding halving the score;
    ``defects`` lists each row's kinds."""
    counts = np.array([len(f) for f in found])
    flags = counts > 0
    return CheckResult(
        name=name,
        scores=0.5**counts,
        flags=flags,
        score=float(1.0 - flags.mean()) if len(found) else 1.0,
        details={
            "findings": found,
            "defects": [sorted({f.split(":", 1)[0] for f in row}) for row in found],
            **details,
        },
    )

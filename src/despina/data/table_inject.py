"""Inject known problems into a real table with a fixed seed, so ground truth is exact.

Each kind touches ``rate`` of the rows, no row more than one kind:
- ``missing``: one feature cell emptied;
- ``type``: one numeric cell replaced by text a person or an export could write
  ("12,5", "1O", "unknown", "3.4.1");
- ``range``: one numeric cell set beyond the column's observed minimum or maximum by 2 to
  10 times the column's span (a sentinel or a unit slip, out of range by definition);
- ``unseen``: one categorical cell set to a value the column never holds;
- ``exact``, ``near``, ``conflicting``: a copy of a row inserted elsewhere: unchanged; with
  each numeric cell moved by noise of 0.2% of its column's span (``column_span``); with
  the target changed to another class.

Used by the tests and ``benchmarks/tables.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from despina.data.tables import column_span, infer_schema, numeric_values

CELL_KINDS = ("missing", "type", "range", "unseen")
COPY_KINDS = ("exact", "near", "conflicting")
TYPOS = ("12,5", "1O", "unknown", "3.4.1", "?", "none given")


@dataclass
class TableInjection:
    """The table with problems, and which rows hold which (positions in ``frame``)."""

    frame: pd.DataFrame
    cells: dict[str, list[int]] = field(default_factory=dict)  # kind -> rows
    copies: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # (original, copy)

    @property
    def touched(self) -> set[int]:
        rows = {r for v in self.cells.values() for r in v}
        return rows | {r for v in self.copies.values() for pair in v for r in pair}


def inject_table_problems(
    base: pd.DataFrame, target: str | None, rate: float = 0.02, seed: int = 0
) -> TableInjection:
    """``base`` (assumed clean) with every applicable kind of problem injected."""
    rng = np.random.default_rng(seed)
    schema = infer_schema(base, target)
    numeric, categorical = schema.numeric, schema.categorical
    frame = base.reset_index(drop=True).astype(object)
    n = len(frame)
    per_kind = max(1, round(rate * n))
    order = list(rng.permutation(n))
    cells: dict[str, list[int]] = {}
    spans = {}
    for name in numeric:
        v = numeric_values(base[name])
        spans[name] = (float(np.nanmin(v)), float(np.nanmax(v)), column_span(v))
    for kind in CELL_KINDS:
        pool = {"missing": [*numeric, *categorical], "type": numeric, "range": numeric}.get(
            kind, categorical
        )
        if not pool:
            continue
        rows = [int(order.pop()) for _ in range(per_kind)]
        cells[kind] = rows
        for r in rows:
            col = pool[int(rng.integers(len(pool)))]
            if kind == "missing":
                frame.at[r, col] = None
            elif kind == "type":
                frame.at[r, col] = TYPOS[int(rng.integers(len(TYPOS)))]
            elif kind == "range":
                low, high, _ = spans[col]
                far = (high - low or 1.0) * rng.uniform(2, 10)
                frame.at[r, col] = high + far if rng.random() < 0.5 else low - far
            else:
                frame.at[r, col] = f"zz-{rng.integers(10**6)}"
    copies: list[tuple[str, dict[Any, Any], int]] = []
    for kind in COPY_KINDS:
        if (kind == "near" and not numeric) or (kind == "conflicting" and target is None):
            continue
        for _ in range(per_kind):
            src = int(order.pop())
            row: dict[Any, Any] = frame.iloc[src].to_dict()  # cells keep their types
            if kind == "near":
                for name in numeric:
                    value = float(row[name])
                    row[name] = value + rng.normal(0, 0.002 * spans[name][2])
            elif kind == "conflicting":
                assert target is not None
                others = [c for c in base[target].unique() if c != row[target]]
                row[target] = others[int(rng.integers(len(others)))]
            copies.append((kind, row, src))
    extra = pd.DataFrame([row for _, row, _ in copies], columns=frame.columns, dtype=object)
    whole = pd.concat([frame, extra], ignore_index=True)
    perm = rng.permutation(len(whole))
    new_pos = np.empty(len(whole), np.int64)
    new_pos[perm] = np.arange(len(whole))
    out = TableInjection(whole.iloc[perm].reset_index(drop=True))
    out.cells = {k: sorted(int(new_pos[r]) for r in v) for k, v in cells.items()}
    for i, (kind, _, src) in enumerate(copies):
        out.copies.setdefault(kind, []).append((int(new_pos[src]), int(new_pos[n + i])))
    return out

"""Table preprocessing fitted once and saved with the model: impute, scale, map categories.

``transform`` gives one float32 matrix: robustly scaled numeric columns (the median
imputed where a cell is missing or not a number), a missing-indicator for each numeric
column that had gaps when fitted, then one integer code per categorical column (0 for
missing or unseen, 1.. for the categories seen), which the MLP embeds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from despina.core.errors import ModelError
from despina.data.tables import TableSchema, is_missing, numeric_values
from despina.security.envelope import read_artifact

#: Categories beyond this many (by frequency) share the "unseen" code: an id-like column
#: would otherwise give the MLP an embedding per row.
MAX_CATEGORIES = 1000
#: Scaled numerics are clipped here so one wild value cannot dominate a training batch.
CLIP = 10.0


@dataclass(frozen=True)
class TableLayout:
    """Where each part sits in the transformed matrix."""

    numeric: int  # scaled numeric columns plus missing indicators, first
    cardinalities: tuple[int, ...]  # per categorical column: categories + 1 (code 0)

    @property
    def width(self) -> int:
        return self.numeric + len(self.cardinalities)


class TablePipeline:
    """fit/transform over a table's raw cells; fitted state ends in ``_``."""

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema

    def fit(self, frame: pd.DataFrame) -> TablePipeline:
        self.center_: dict[str, float] = {}
        self.scale_: dict[str, float] = {}
        self.indicate_: list[str] = []
        for name in self.schema.numeric:
            v = numeric_values(frame[name])
            finite = v[np.isfinite(v)]
            if finite.size == 0:
                self.center_[name], self.scale_[name] = 0.0, 1.0
            else:
                q25, med, q75 = np.quantile(finite, [0.25, 0.5, 0.75])
                scale = (q75 - q25) / 1.349 or float(finite.std()) or 1.0
                self.center_[name], self.scale_[name] = float(med), float(scale)
            if not np.isfinite(v).all():
                self.indicate_.append(name)
        self.categories_: dict[str, list[str]] = {}
        for name in self.schema.categorical:
            col = frame[name][~is_missing(frame[name])].astype(str)
            counts = col.value_counts(sort=True)
            self.categories_[name] = sorted(map(str, counts.index[:MAX_CATEGORIES]))
        return self

    @property
    def layout(self) -> TableLayout:
        self._fitted()
        return TableLayout(
            len(self.schema.numeric) + len(self.indicate_),
            tuple(len(self.categories_[c]) + 1 for c in self.schema.categorical),
        )

    def transform(self, frame: pd.DataFrame, clip: bool = True) -> np.ndarray:
        """The model's input matrix; ``clip=False`` keeps extreme values as they are (for
        detectors that look for them)."""
        self._fitted()
        bound = CLIP if clip else np.inf
        parts: list[np.ndarray] = []
        for name in self.schema.numeric:
            v = numeric_values(frame[name])
            scaled = (v - self.center_[name]) / self.scale_[name]
            parts.append(np.clip(np.where(np.isfinite(scaled), scaled, 0.0), -bound, bound))
        for name in self.indicate_:
            parts.append((~np.isfinite(numeric_values(frame[name]))).astype(np.float64))
        for name in self.schema.categorical:
            index = {c: i + 1 for i, c in enumerate(self.categories_[name])}
            col = frame[name]
            missing = is_missing(col)
            codes = [0 if m else index.get(str(v), 0) for v, m in zip(col, missing, strict=True)]
            parts.append(np.asarray(codes, np.float64))
        if not parts:
            return np.zeros((len(frame), 0), np.float32)
        return np.stack(parts, axis=1).astype(np.float32)

    def _fitted(self) -> None:
        if not hasattr(self, "center_"):
            raise ModelError("the table pipeline is not fitted: call fit() first")

    def to_dict(self) -> dict[str, Any]:
        self._fitted()
        return {
            "kind": "table",
            "schema": self.schema.model_dump(mode="json"),
            "center": self.center_,
            "scale": self.scale_,
            "indicate": self.indicate_,
            "categories": self.categories_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TablePipeline:
        try:
            pipe = cls(TableSchema.model_validate(data["schema"]))
            pipe.center_ = {str(k): float(v) for k, v in data["center"].items()}
            pipe.scale_ = {str(k): float(v) for k, v in data["scale"].items()}
            pipe.indicate_ = [str(c) for c in data["indicate"]]
            pipe.categories_ = {str(k): [str(c) for c in v] for k, v in data["categories"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"table preprocessing is incomplete or malformed: {exc}") from exc
        return pipe

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> TablePipeline:
        try:
            return cls.from_dict(json.loads(read_artifact(path)))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read preprocessing from {path}: {exc}") from exc

"""The image dataset: an ordered list of records with stable ids and string labels."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from despina.core.errors import DataError


@dataclass(frozen=True)
class ImageRecord:
    """One sample: a stable id (its relative path), where to read it, and its given label.

    Built-in datasets carry their pixels in ``array`` instead of a file.
    """

    id: str
    path: str
    label: str
    array: np.ndarray | None = field(default=None, compare=False, repr=False)
    missing: bool = False


@dataclass(frozen=True)
class ImageDataset:
    """Records in a fixed order, plus where they came from."""

    records: tuple[ImageRecord, ...]
    source: str
    root: Path | None = None

    def __post_init__(self) -> None:
        if not self.records:
            raise DataError(
                f"no images found in {self.source}: point Despina at a folder with one "
                "subfolder per class, or a CSV/Parquet manifest with columns path,label"
            )
        ids = Counter(r.id for r in self.records)
        dup = [i for i, n in ids.items() if n > 1]
        if dup:
            raise DataError(f"sample ids must be unique; repeated: {dup[:5]}")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.records]

    @property
    def class_names(self) -> list[str]:
        """Sorted distinct labels (numeric labels sort numerically)."""
        names = set(self.labels)
        try:
            return sorted(names, key=lambda s: (float(s), s))
        except ValueError:
            return sorted(names)

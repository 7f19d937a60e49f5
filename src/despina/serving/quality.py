"""Quality flags of one upload: the audit's defect rules against the training set's
statistics, from the same one-pass image features."""

from __future__ import annotations

from typing import Any

import numpy as np

from despina.audit.checks.defect import defect_margins
from despina.audit.image_stats import ImageFeatures

#: The image-level defects an upload is flagged for.
FLAGS = ("blurry", "dark", "overexposed", "low_information")


def image_flags(features: ImageFeatures, reference: dict[str, list[float]]) -> dict[str, Any]:
    """``{flag: bool}`` for each of :data:`FLAGS`, plus the margins (negative = defective)."""
    margins = defect_margins(features.stats[None, :], reference)
    out: dict[str, Any] = {name: bool(margins[name][0] < 0) for name in FLAGS}
    out["margins"] = {name: round(float(np.clip(margins[name][0], -99, 99)), 3) for name in FLAGS}
    return out

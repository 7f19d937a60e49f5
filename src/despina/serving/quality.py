"""Quality flags of one upload: the audit's defect rules against the training set's
statistics, from the same one-pass image features."""

from __future__ import annotations

import numpy as np

from despina.audit.checks.defect import defect_margins

#: The image-level defects an upload is flagged for.
FLAGS = ("blurry", "dark", "overexposed", "low_information")


def image_flags(
    stats: np.ndarray, reference: dict[str, list[float]]
) -> tuple[dict[str, bool], dict[str, float]]:
    """``{flag: bool}`` for each of :data:`FLAGS` from one image's statistics, and each
    flag's margin (negative = defective, clipped to ±99 for JSON)."""
    margins = defect_margins(stats, reference)  # one row: NumPy scalars, cheaper than arrays
    # Python's min and max on one float: np.clip costs more than the check itself.
    values = {name: min(max(float(margins[name]), -99.0), 99.0) for name in FLAGS}
    return {k: v < 0 for k, v in values.items()}, {k: round(v, 3) for k, v in values.items()}

"""Image defects from the one-pass statistics: blur, exposure, information, colour, size.

Each defect has a margin (positive = fine, negative = defective) that combines a robust
z-score against the dataset's own distribution with a fixed sanity bound, so a dataset of
night photos is not all "dark" and one odd image in a uniform dataset still stands out.
Blur on photos is read from the spectrum's shape at two scales (``fine_ratio``,
``coarse_ratio``: ratios of band energies, so a naturally smooth photo with its sensor
noise is not taken for a blurred one). Images too small for the coarse band (digits,
icons) use two edge statistics instead, independent of brightness and contrast: edge
steepness (the 99th percentile of the Sobel gradient magnitude over the intensity range,
after Marziliano et al.'s edge-width idea, ICIP 2002), which separates blur on thin
strokes, and Crete et al.'s re-blur "blur effect" (SPIE 2007); together they beat either
alone and the variance of the Laplacian in ``make demo``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from despina.audit.base import AuditContext, Check, CheckResult, sigmoid
from despina.audit.image_stats import STAT_NAMES


def _both(z_margin: np.ndarray, abs_margin: np.ndarray) -> np.ndarray:
    """Defective only when both the relative and the absolute test fail."""
    return np.maximum(z_margin, abs_margin)


def _either(hard_margin: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """Defective past a hard bound, or when the relative-and-soft test fails."""
    return np.minimum(hard_margin, soft)


#: Per-row quantities whose robust z-scores the defect rules use, from the stats matrix.
_Z_FLOORS = {
    "brightness": 0.03,
    "p05": 0.03,
    "highlights": 0.03,
    "detail": 0.01,
    "sharpness": 0.03,
    "blur_log": 0.03,
    "fine_ratio": 0.2,
    "coarse_ratio": 0.2,
    "log_area": 0.2,
    "log_aspect": 0.1,
}


def _derived(values: np.ndarray) -> dict[str, np.ndarray]:
    col = {name: values[..., i] for i, name in enumerate(STAT_NAMES)}
    return {
        **col,
        "blur_log": np.log(1 - np.clip(col["blur_effect"], 0, 0.999)),
        "log_area": np.log(col["width"] * col["height"]),
        "log_aspect": np.log(col["width"] / col["height"]),
    }


def defect_reference(values: np.ndarray) -> dict[str, list[float]]:
    """Median and robust scale of each quantity, and the colour fraction, of a dataset's
    stats: what an image is compared with when it arrives alone (at serving time)."""
    d = _derived(values)
    ref: dict[str, list[float]] = {}
    for name in _Z_FLOORS:
        v = d[name][np.isfinite(d[name])]
        med = float(np.median(v)) if v.size else 0.0
        mad = float(np.median(np.abs(v - med))) * 1.4826 if v.size else 0.0
        ref[name] = [med, mad]
    spread = d["color_spread"][np.isfinite(d["color_spread"])]
    ref["colour_fraction"] = [float((spread > 8).mean()) if spread.size else 0.0]
    return ref


def defect_margins(
    values: np.ndarray, reference: dict[str, list[float]] | None = None
) -> dict[str, np.ndarray]:
    """Margin per image-level defect for each row of a stats matrix (NaN rows stay NaN),
    against ``reference`` (see :func:`defect_reference`) or the rows' own distribution.
    One image's stats vector with a reference gives one NumPy scalar per defect: the
    same numbers, at a third less cost than a one-row matrix (a serving request's case).
    """
    ref = reference or defect_reference(values)
    d = _derived(values)

    def z(name: str) -> np.ndarray:
        if name not in ref:  # a reference saved before this statistic existed
            return np.full(values.shape[:-1], np.inf)
        med, mad = ref[name]
        return (d[name] - med) / max(mad, _Z_FLOORS[name])

    detail = d["detail"]
    highlights, spread = d["highlights"], d["color_spread"]
    m: dict[str, np.ndarray] = {}
    # Exposure is read per channel (peak: the brightest channel's 95th percentile; base:
    # the darkest channel's 5th), so a deep blue sky or a red wall is not "dark" for its
    # low luminance. Dark: even the peak is under a quarter of full scale, two stops under
    # a normal exposure (a dataset of night scenes is dark by this account too), or far
    # darker than the rest of the dataset with the peak under 40% (a dimmed scan of paper).
    peak, base = d["peak_p95"], d["base_p05"]
    m["dark"] = _either((peak - 0.25) / 0.05, _both(z("brightness") + 4.0, (peak - 0.4) / 0.05))
    # Overexposed: a quarter of the image clipped to white, or the whole distribution
    # pushed to the top (even the base above 60%) while there is content to wash out; a
    # light, flat surface (a white wall, a hazy sky) is neither. Clipping is judged
    # against the dataset too, so scans on white paper are not all overexposed.
    m["overexposed"] = np.minimum(
        _both(4.0 - z("highlights"), (0.25 - highlights) / 0.05),
        np.maximum((0.6 - base) / 0.05, (0.02 - detail) / 0.005),
    )
    # Blank: after light smoothing the image varies by under about two grey levels (a
    # clear sky's gradient is more), or it is far flatter than the rest of the dataset.
    m["low_information"] = _either(
        (detail - 0.007) / 0.002, _both(z("detail") + 4.0, (detail - 0.03) / 0.01)
    )
    # The spectrum's shape at two scales, and, on images too small to have the coarse
    # band (under 32 px: thin strokes, icons), two edge statistics, each strong where the
    # other is weak. On photos the edge statistics' clean tail is long (1% of the clean
    # tiles of benchmarks/image_defects.py lie below z -6), so there they only add false
    # alarms. The coarse ratio's clean tail is longer than the fine one's (bokeh, soft
    # fur), hence its lower bound. Images with the coarse band have no blur effect (it is
    # computed only where it decides), so a reference saved before the ratios (z = inf)
    # keeps the edge rule on small images only. fmin: NaN terms drop out.
    z_coarse = z("coarse_ratio")
    edges = (z("sharpness") + z("blur_log")) / np.sqrt(2.0) + 3.5
    blur = np.fmin.reduce(
        [
            np.where(np.isfinite(z_coarse), np.inf, edges),
            z("fine_ratio") + 1.85,
            z_coarse + 2.35,
        ]
    )
    m["blurry"] = np.where(m["low_information"] < 0, np.inf, blur)
    if ref["colour_fraction"][0] >= 0.5:
        m["grayscale"] = (spread - 4.0) / 2.0
    else:
        m["grayscale"] = np.full(np.shape(spread), np.inf)
    m["odd_size"] = 5.0 - np.abs(z("log_area"))
    m["odd_aspect_ratio"] = 5.0 - np.abs(z("log_aspect"))
    return m


class DefectCheck(Check):
    name: ClassVar[str] = "defect"
    description: ClassVar[str] = "blurry, dark, overexposed, blank, odd-sized or broken images"
    requires: ClassVar[frozenset[str]] = frozenset({"image_stats"})

    def run(self, ctx: AuditContext) -> CheckResult:
        if ctx.n == 0:
            return self.empty(ctx)
        assert ctx.image_stats is not None  # ensured by requires
        margins = defect_margins(ctx.image_stats.values)
        names = list(margins)
        stacked = np.stack([margins[k] for k in names], axis=1)
        valid = ctx.valid
        worst = np.where(valid, np.nanmin(np.where(np.isnan(stacked), np.inf, stacked), axis=1), 0)
        scores = np.where(valid, sigmoid(np.minimum(worst, 50.0)), 0.0)
        per_row: list[list[str]] = []
        for i in range(ctx.n):
            if not valid[i]:
                per_row.append([ctx.load_defects[i] or "corrupt"])
            else:
                per_row.append([k for k, v in zip(names, stacked[i], strict=True) if v < 0])
        flags = np.array([bool(d) for d in per_row], dtype=bool)
        return CheckResult(
            name=self.name,
            scores=scores.astype(np.float64),
            flags=flags,
            score=float(1.0 - flags.mean()) if ctx.n else 1.0,
            details={"defects": per_row},
        )

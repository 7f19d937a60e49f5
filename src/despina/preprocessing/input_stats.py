"""How far a model input lies outside the inputs the model was trained on, by a few
statistics of the preprocessed image itself.

The embedding-neighbour check misses inputs the network maps among its classes with
confidence although they resemble nothing it saw: noise, blank or black frames, solid
colours. Statistics of the model input catch those. They are taken after resizing and
normalization, so they do not depend on an upload's resolution, and each is compared
with its spread over the training inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FEATURES = ("mean", "std", "q05", "q95", "gradient", "border")
#: The training set's 99.5th percentile deviation of a feature from its median is this
#: many scale units: an input twice as far out as the farthest training inputs then
#: reaches z = 5, past the out-of-distribution threshold.
TAIL_Z = 2.5
TAIL = 0.995


def input_features(x: np.ndarray) -> np.ndarray:
    """(n, len(FEATURES)) for preprocessed inputs (n, C, H, W): mean, standard deviation,
    5th and 95th percentiles, mean absolute difference of neighbouring pixels, and the
    mean of the outer frame (what a dataset's objects stand on: paper, a studio
    background, a scene)."""
    flat = x.reshape(len(x), -1).astype(np.float32, copy=False)
    q05, q95 = np.quantile(flat, (0.05, 0.95), axis=1)
    grad = np.abs(np.diff(x, axis=-1)).mean(axis=(1, 2, 3)) + np.abs(np.diff(x, axis=-2)).mean(
        axis=(1, 2, 3)
    )
    frame = np.ones(x.shape[-2:], bool)
    frame[1:-1, 1:-1] = False
    border = x[..., frame].mean(axis=(1, 2))
    columns = [flat.mean(1), flat.std(1), q05, q95, grad, border]
    return np.stack(columns, axis=1).astype(np.float64)


def input_reference(x: np.ndarray) -> dict[str, Any]:
    """Median and scale of each feature over the training inputs ``x``."""
    f = input_features(x)
    med = np.median(f, axis=0)
    tail = np.quantile(np.abs(f - med), TAIL, axis=0)
    scale = np.maximum(tail / TAIL_Z, 1e-3)
    return {"features": list(FEATURES), "median": med.tolist(), "scale": scale.tolist()}


def input_z(x: np.ndarray, reference: dict[str, Any] | None) -> np.ndarray:
    """(n,) the largest robust z of any feature: how far outside the training inputs;
    zeros without a reference (a model folder written before this check existed)."""
    if not reference:
        return np.zeros(len(x))
    f = input_features(x)
    med, scale = np.asarray(reference["median"]), np.asarray(reference["scale"])
    return np.asarray(np.abs(f - med) / scale).max(axis=1)

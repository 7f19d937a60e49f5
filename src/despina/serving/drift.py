"""Input drift: a rolling window of upload statistics and predicted classes, compared
with the training set by the population stability index (PSI) per feature.

PSI = Σ (p_live - p_train) · ln(p_live / p_train) over the training set's decile bins;
the usual reading is < 0.1 stable, 0.1-0.25 shifting, > 0.25 drifted.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

from despina.audit.image_stats import STAT_NAMES

STABLE, DRIFTED = 0.1, 0.25


def psi(expected: np.ndarray, observed: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index between two distributions over the same bins."""
    p = np.clip(np.asarray(observed, np.float64), eps, None)
    q = np.clip(np.asarray(expected, np.float64), eps, None)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((p - q) * np.log(p / q)))


def _status(value: float) -> str:
    return "stable" if value < STABLE else "shifting" if value < DRIFTED else "drifted"


class DriftMonitor:
    """Thread-safe rolling window (``window`` uploads) against a model's drift reference."""

    def __init__(
        self,
        reference: dict[str, Any],
        class_names: list[str],
        window: int = 1000,
        min_samples: int = 50,
        names: tuple[str, ...] | list[str] = STAT_NAMES,
    ) -> None:
        """``names``: what the columns of an observed statistics vector are (an image's
        statistics by default; a table's numeric columns, a series' channel summaries)."""
        self.features = {
            name: (np.asarray(ref["edges"]), np.asarray(ref["fractions"]))
            for name, ref in reference["features"].items()
        }
        self.columns = [list(names).index(name) for name in self.features]
        self.class_ref = np.asarray(reference["classes"])
        self.class_names = class_names
        self.min_samples = min_samples
        self._stats: deque[np.ndarray] = deque(maxlen=window)
        self._classes: deque[int] = deque(maxlen=window)
        self._lock = threading.Lock()

    def observe(self, stats: np.ndarray, classes: list[int]) -> None:
        with self._lock:
            self._stats.append(stats[self.columns])
            self._classes.extend(classes)

    def report(self) -> dict[str, Any]:
        """PSI and status per feature and for predicted classes (``None`` until enough data)."""
        with self._lock:
            stats = np.array(self._stats) if self._stats else np.empty((0, len(self.columns)))
            classes = np.array(self._classes, dtype=int)
        enough = len(stats) >= self.min_samples
        out: dict[str, Any] = {"window": len(stats), "min_samples": self.min_samples}
        feats: dict[str, Any] = {}
        for j, (name, (edges, fractions)) in enumerate(self.features.items()):
            if not enough:
                feats[name] = {"psi": None, "status": "insufficient data"}
                continue
            counts = np.bincount(
                np.searchsorted(edges, stats[:, j], side="right"), minlength=len(fractions)
            )
            value = psi(fractions, counts / counts.sum())
            feats[name] = {"psi": round(value, 4), "status": _status(value)}
        out["features"] = feats
        if len(classes) >= self.min_samples:
            live = np.bincount(classes, minlength=len(self.class_ref)) / len(classes)
            value = psi(self.class_ref, live)
            out["predicted_classes"] = {
                "psi": round(value, 4),
                "status": _status(value),
                "live": {
                    n: round(float(f), 4) for n, f in zip(self.class_names, live, strict=True)
                },
            }
        else:
            out["predicted_classes"] = {"psi": None, "status": "insufficient data"}
        scores = [f["psi"] for f in feats.values() if f["psi"] is not None]
        out["drifted"] = bool(scores and max(scores) >= DRIFTED) or (
            out["predicted_classes"]["status"] == "drifted"
        )
        return out

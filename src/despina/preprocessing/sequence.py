"""Sequence preprocessing fitted once and saved with the model: per-channel standardizing.

Each channel is centred and scaled by the mean and standard deviation of its finite
values over the training series; missing and non-finite steps (and the padding after a
short series) become 0, the channel's mean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from despina.core.errors import ModelError
from despina.security.envelope import read_artifact

CLIP = 10.0


class SequencePipeline:
    """fit/transform over (n, channels, length) arrays; fitted state ends in ``_``."""

    def fit(self, x: np.ndarray) -> SequencePipeline:
        self.center_: list[float] = []
        self.scale_: list[float] = []
        for c in range(x.shape[1]):
            v = x[:, c][np.isfinite(x[:, c])]
            self.center_.append(float(v.mean()) if v.size else 0.0)
            self.scale_.append(float(v.std()) if v.size and v.std() > 0 else 1.0)
        self.length_ = int(x.shape[2])
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "center_"):
            raise ModelError("the sequence pipeline is not fitted: call fit() first")
        if x.shape[1] != len(self.center_):
            raise ModelError(
                f"series with {x.shape[1]} channels given to a pipeline fitted on "
                f"{len(self.center_)}"
            )
        out = np.zeros((len(x), x.shape[1], self.length_), np.float32)
        n = min(self.length_, x.shape[2])
        center = np.asarray(self.center_, np.float32)[None, :, None]
        scale = np.asarray(self.scale_, np.float32)[None, :, None]
        scaled = (x[:, :, :n] - center) / scale
        out[:, :, :n] = np.clip(np.where(np.isfinite(scaled), scaled, 0.0), -CLIP, CLIP)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "sequence", "center": self.center_, "scale": self.scale_,
                "length": self.length_}  # fmt: skip

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> SequencePipeline:
        try:
            data = json.loads(read_artifact(path))
            pipe = cls()
            pipe.center_ = [float(v) for v in data["center"]]
            pipe.scale_ = [float(v) for v in data["scale"]]
            pipe.length_ = int(data["length"])
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"cannot read sequence preprocessing from {path}: {exc}") from exc
        return pipe

"""decode → resize/pad/crop → colour mode → normalize, fitted on training data, saved as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from despina.core.errors import ConfigError, ModelError
from despina.security.envelope import read_artifact

FitMode = Literal["resize", "pad", "crop"]
ColorMode = Literal["rgb", "grayscale"]


def resize_image(image: np.ndarray, size: int, fit: FitMode = "resize") -> np.ndarray:
    """Bring an RGB uint8 image to ``size`` x ``size``.

    ``resize`` stretches, ``pad`` keeps the aspect ratio and pads with the border's median,
    ``crop`` scales the short side to ``size`` and cuts the centre.
    """
    h, w = image.shape[:2]
    if fit == "resize":
        return _scale(image, size, size)
    if fit == "crop":
        s = size / min(h, w)
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        scaled = _scale(image, nw, nh)
        top, left = (nh - size) // 2, (nw - size) // 2
        return np.ascontiguousarray(scaled[top : top + size, left : left + size])
    if fit == "pad":
        s = size / max(h, w)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        scaled = _scale(image, nw, nh)
        border = np.concatenate([scaled[0], scaled[-1], scaled[:, 0], scaled[:, -1]])
        fill = np.median(border.reshape(-1, image.shape[2]), axis=0).astype(np.uint8)
        out = np.empty((size, size, image.shape[2]), dtype=np.uint8)
        out[:] = fill
        top, left = (size - nh) // 2, (size - nw) // 2
        out[top : top + nh, left : left + nw] = scaled
        return out
    raise ConfigError(f"fit must be resize, pad or crop, not {fit!r}")


def _scale(image: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    # INTER_AREA only pays off for large reductions; it costs more at other ratios.
    interp = cv2.INTER_AREA if width * 2 <= w and height * 2 <= h else cv2.INTER_LINEAR
    out = cv2.resize(image, (width, height), interpolation=interp)
    return out if out.ndim == 3 else out[:, :, None]


def to_mode(image: np.ndarray, mode: ColorMode) -> np.ndarray:
    """RGB uint8 (H, W, 3) to float32 (C, H, W) in [0, 1] with 3 or 1 channels."""
    if mode == "grayscale":
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return (gray.astype(np.float32) / 255.0)[None]
    return image.astype(np.float32).transpose(2, 0, 1) / 255.0


class ImagePipeline:
    """The preprocessing a model was trained with: size, fit, colour mode and normalization.

    The constructor only stores parameters; :meth:`fit` chooses the colour mode (when
    ``auto``) and per-channel statistics from training images; fitted state ends in ``_``.
    """

    def __init__(self, size: int = 32, fit: FitMode = "resize", color_mode: str = "auto") -> None:
        if color_mode not in ("auto", "rgb", "grayscale"):
            raise ConfigError(f"color_mode must be auto, rgb or grayscale, not {color_mode!r}")
        self.size = size
        self.fit_mode: FitMode = fit
        self.color_mode = color_mode

    def resize(self, image: np.ndarray) -> np.ndarray:
        return resize_image(image, self.size, self.fit_mode)

    def fit(self, resized: np.ndarray, grayscale_fraction: float | None = None) -> ImagePipeline:
        """Fit on resized RGB images (N, size, size, 3); ``grayscale_fraction`` picks auto mode."""
        if len(resized) == 0:
            raise ConfigError("cannot fit preprocessing on zero images")
        if self.color_mode == "auto":
            if grayscale_fraction is None:
                spread = np.abs(resized.astype(np.int16) - resized.mean(axis=3, keepdims=True))
                grayscale_fraction = float(np.mean(spread.max(axis=(1, 2, 3)) <= 2))
            self.mode_: ColorMode = "grayscale" if grayscale_fraction >= 0.9 else "rgb"
        else:
            self.mode_ = "grayscale" if self.color_mode == "grayscale" else "rgb"
        x = self._modes(resized)
        self.mean_ = x.mean(axis=(0, 2, 3)).astype(np.float32)
        self.std_ = np.maximum(x.std(axis=(0, 2, 3)), 1e-3).astype(np.float32)
        return self

    @property
    def channels(self) -> int:
        self._check_fitted()
        return 1 if self.mode_ == "grayscale" else 3

    def _modes(self, resized: np.ndarray) -> np.ndarray:
        # Filled row by row: a stack of per-image arrays would hold the images twice.
        channels = 1 if self.mode_ == "grayscale" else 3
        out = np.empty((len(resized), channels, *resized.shape[1:3]), np.float32)
        for i, im in enumerate(resized):
            out[i] = to_mode(im, self.mode_)
        return out

    def transform_resized(self, resized: np.ndarray) -> np.ndarray:
        """Resized RGB uint8 images (N, size, size, 3) to normalized float32 (N, C, size, size)."""
        self._check_fitted()
        x = self._modes(resized)  # float32, a new array: normalized in place
        x -= self.mean_[None, :, None, None]
        x /= self.std_[None, :, None, None]
        return x

    def transform(self, images: list[np.ndarray]) -> np.ndarray:
        """Decoded RGB uint8 images of any size to the model's input tensor layout."""
        resized = (
            np.stack([self.resize(im) for im in images])
            if images
            else np.empty((0, self.size, self.size, 3), np.uint8)
        )
        return self.transform_resized(resized)

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise ModelError("the preprocessing pipeline is not fitted: call fit() first")

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "size": self.size,
            "fit": self.fit_mode,
            "color_mode": self.mode_,
            "mean": [float(v) for v in self.mean_],
            "std": [float(v) for v in self.std_],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePipeline:
        try:
            pipe = cls(int(data["size"]), data["fit"], data["color_mode"])
            pipe.mode_ = data["color_mode"]
            pipe.mean_ = np.asarray(data["mean"], dtype=np.float32)
            pipe.std_ = np.asarray(data["std"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"preprocessing config is incomplete: {exc}") from exc
        return pipe

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> ImagePipeline:
        try:
            return cls.from_dict(json.loads(read_artifact(path)))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read preprocessing from {path}: {exc}") from exc

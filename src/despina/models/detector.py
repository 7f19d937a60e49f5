"""A small one-stage detector: a centre heatmap, box sizes and centre offsets at stride 4
(after Zhou et al., "Objects as Points", 2019), class-agnostic, because the deployed
classifier labels every box it finds. Plus the numpy pre- and post-processing serving uses.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

STRIDE = 4


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CenterDetector(nn.Module):
    """Backbone at strides 4, 8 and 16, merged at stride 4 (a small feature pyramid), then
    three heads: objectness heatmap (logits), log box size in pixels, sub-cell offset."""

    def __init__(self, in_channels: int = 3, width: int = 24) -> None:
        super().__init__()
        w = width
        self.s4 = nn.Sequential(_block(in_channels, w, 2), _block(w, w, 2), _block(w, w))
        self.s8 = nn.Sequential(_block(w, 2 * w, 2), _block(2 * w, 2 * w))
        self.s16 = nn.Sequential(_block(2 * w, 4 * w, 2), _block(4 * w, 4 * w))
        self.s32 = nn.Sequential(_block(4 * w, 4 * w, 2), _block(4 * w, 4 * w))
        self.lat8 = nn.Conv2d(2 * w, w, 1)
        self.lat16 = nn.Conv2d(4 * w, w, 1)
        self.lat32 = nn.Conv2d(4 * w, w, 1)
        self.merge = _block(w, w)
        heat = nn.Conv2d(w, 1, 1)
        nn.init.constant_(heat.bias, -2.19)  # type: ignore[arg-type]  # prior 0.1: stable start
        self.heat = nn.Sequential(_block(w, w), heat)
        self.size = nn.Sequential(_block(w, w), nn.Conv2d(w, 2, 1))
        self.offset = nn.Sequential(_block(w, w), nn.Conv2d(w, 2, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f4 = self.s4(x)
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        up = nn.functional.interpolate
        top = self.lat32(f32)
        p16 = self.lat16(f16) + up(top, size=f16.shape[-2:], mode="nearest")
        p8 = self.lat8(f8) + up(p16, size=f8.shape[-2:], mode="nearest")
        p4 = self.merge(f4 + up(p8, size=f4.shape[-2:], mode="nearest"))
        return torch.sigmoid(self.heat(p4)), self.size(p4), self.offset(p4)


def normalize_canvas(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) to float32 (3, H, W) centred on zero."""
    return (rgb.astype(np.float32).transpose(2, 0, 1) - 127.5) / 64.0


def prepare_canvas(
    rgb: np.ndarray, stride: int = 32, max_side: int | None = None
) -> tuple[np.ndarray, float]:
    """Scale (down only, to ``max_side``) and pad an image to a multiple of ``stride``;
    return the (1, 3, H, W) input and the scale applied."""
    h, w = rgb.shape[:2]
    scale = 1.0
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))))
        h, w = rgb.shape[:2]
    ph, pw = -(-h // stride) * stride, -(-w // stride) * stride
    if (ph, pw) != (h, w):
        rgb = cv2.copyMakeBorder(rgb, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)
    return normalize_canvas(rgb)[None], scale


def decode_heatmap(
    heat: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    stride: int,
    threshold: float,
    max_objects: int = 64,
    size_scale: tuple[float, float] = (1.0, 1.0),
) -> list[tuple[float, float, float, float, float]]:
    """Local maxima of the heatmap above ``threshold`` → (x, y, w, h, score) in pixels;
    ``size_scale`` multiplies widths and heights about each centre (the calibration
    ``train-detector`` saves as ``size_correction``)."""
    peaks = heat == cv2.dilate(heat, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero(peaks & (heat >= threshold))
    order = np.argsort(-heat[ys, xs])[:max_objects]
    found = []
    for i in order:
        y, x = int(ys[i]), int(xs[i])
        cx = (x + float(offset[0, y, x])) * stride
        cy = (y + float(offset[1, y, x])) * stride
        bw = float(np.exp(size[0, y, x])) * size_scale[0]
        bh = float(np.exp(size[1, y, x])) * size_scale[1]
        found.append((cx - bw / 2, cy - bh / 2, bw, bh, float(heat[y, x])))
    return found

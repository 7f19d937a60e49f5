"""Train the class-agnostic detector from a classification dataset alone: real training
images pasted at known positions onto crops of real background photos (copy-paste
synthesis, after Dwibedi et al., "Cut, Paste and Learn", ICCV 2017), fresh every step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from despina.core.boxes import box_iou
from despina.core.errors import DataError
from despina.models.detector import STRIDE, CenterDetector, decode_heatmap, normalize_canvas


@dataclass(frozen=True)
class Canvas:
    image: np.ndarray  # RGB uint8 (H, W, 3)
    boxes: np.ndarray  # (n, 4) x, y, w, h in pixels
    objects: np.ndarray  # (n,) index of each pasted object


def _background(
    backgrounds: Sequence[np.ndarray], size: int, rng: np.random.Generator
) -> np.ndarray:
    bg = backgrounds[int(rng.integers(len(backgrounds)))]
    h, w = bg.shape[:2]
    side = int(min(h, w) * rng.uniform(0.3, 1.0))
    side = max(8, side)
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = cv2.resize(bg[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def synthesize(
    objects: Sequence[np.ndarray],
    backgrounds: Sequence[np.ndarray],
    rng: np.random.Generator,
    size: int = 160,
    count: tuple[int, int] = (1, 4),
    scale: tuple[float, float] = (1.0, 2.5),
) -> Canvas:
    """One canvas with ``count`` objects (RGB uint8) pasted without overlap at random
    scales onto a random crop of a background; the boxes are where they were pasted."""
    canvas = _background(backgrounds, size, rng)
    boxes: list[tuple[int, int, int, int]] = []
    picked: list[int] = []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        i = int(rng.integers(len(objects)))
        obj = objects[i]
        s = rng.uniform(*scale)
        oh, ow = max(4, round(obj.shape[0] * s)), max(4, round(obj.shape[1] * s))
        if oh >= size or ow >= size:
            continue
        for _try in range(20):
            x, y = int(rng.integers(0, size - ow)), int(rng.integers(0, size - oh))
            if all(
                x >= bx + bw or bx >= x + ow or y >= by + bh or by >= y + oh
                for bx, by, bw, bh in boxes
            ):
                canvas[y : y + oh, x : x + ow] = cv2.resize(obj, (ow, oh))
                boxes.append((x, y, ow, oh))
                picked.append(i)
                break
    return Canvas(canvas, np.array(boxes, np.float32).reshape(-1, 4), np.array(picked, int))


def _targets(boxes: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """Heatmap with a Gaussian per centre, log sizes and offsets at centre cells, mask."""
    g = size // STRIDE
    heat = np.zeros((g, g), np.float32)
    wh = np.zeros((2, g, g), np.float32)
    off = np.zeros((2, g, g), np.float32)
    mask = np.zeros((g, g), np.float32)
    yy, xx = np.mgrid[0:g, 0:g]
    for x, y, w, h in boxes:
        cx, cy = (x + w / 2) / STRIDE, (y + h / 2) / STRIDE
        ix, iy = min(g - 1, int(cx)), min(g - 1, int(cy))
        sigma = max(0.7, min(w, h) / STRIDE / 6)
        heat = np.maximum(heat, np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma**2)))
        wh[:, iy, ix] = np.log([w, h])
        off[:, iy, ix] = (cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    return heat, wh, off, mask


def _focal(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on the heatmap."""
    pred = pred.clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    pos_loss = torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = torch.log(1 - pred) * pred**2 * (1 - gt) ** 4 * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def train_detector(
    objects: Sequence[np.ndarray],
    backgrounds: Sequence[np.ndarray],
    *,
    steps: int = 2000,
    batch_size: int = 16,
    size: int = 160,
    width: int = 24,
    scale: tuple[float, float] = (1.0, 2.5),
    learning_rate: float = 3e-3,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> CenterDetector:
    """Train a :class:`CenterDetector` on freshly synthesized canvases (eval mode out)."""
    if not objects:
        raise DataError("the detector needs at least one readable training image to paste")
    if not backgrounds:
        raise DataError("the detector needs at least one readable background photo")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = CenterDetector(3, width)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate, total_steps=steps)
    model.train()
    for step in range(steps):
        canvases = [
            synthesize(objects, backgrounds, rng, size, scale=scale) for _ in range(batch_size)
        ]
        x = torch.from_numpy(np.stack([normalize_canvas(c.image) for c in canvases]))
        t = [_targets(c.boxes, size) for c in canvases]
        heat, wh, off, mask = (torch.from_numpy(np.stack(parts)) for parts in zip(*t, strict=True))
        p_heat, p_wh, p_off = model(x)
        m = mask[:, None]
        n = m.sum().clamp(min=1)
        loss = (
            _focal(p_heat[:, 0], heat)
            + 0.5 * (F.l1_loss(p_wh * m, wh * m, reduction="sum") / n)
            + (F.l1_loss(p_off * m, off * m, reduction="sum") / n)
        )
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        if on_step is not None:
            on_step(step, float(loss.item()))
    model.eval()
    return model


@torch.no_grad()
def size_correction(
    model: CenterDetector,
    objects: Sequence[np.ndarray],
    backgrounds: Sequence[np.ndarray],
    *,
    canvases: int = 200,
    size: int = 160,
    scale: tuple[float, float] = (1.0, 2.5),
    threshold: float = 0.3,
    seed: int = 0,
) -> tuple[float, float]:
    """Factors that undo the detector's median bias in box width and height, measured on
    fresh validation canvases (another seed than training's).

    A briefly trained detector makes boxes a few percent too large on such canvases and on
    held-out ones alike, and the classifier, trained on tightly framed images, labels
    crops of true-size boxes better (docs/benchmarks.md, object extraction).
    """
    rng = np.random.default_rng(seed + 7919)
    ratios: list[tuple[float, float]] = []
    model.eval()
    for _ in range(canvases):
        c = synthesize(objects, backgrounds, rng, size, scale=scale)
        heat, wh, off = model(torch.from_numpy(normalize_canvas(c.image))[None])
        found = decode_heatmap(heat[0, 0].numpy(), wh[0].numpy(), off[0].numpy(), STRIDE, threshold)
        used: set[int] = set()
        for box in found:  # most confident first
            scores = [(box_iou(box, t), j) for j, t in enumerate(c.boxes) if j not in used]
            best = max(scores, default=(0.0, -1))
            if best[0] >= 0.5:
                used.add(best[1])
                t = c.boxes[best[1]]
                ratios.append((box[2] / float(t[2]), box[3] / float(t[3])))
    if len(ratios) < 20:  # too few matches to measure a bias: change nothing
        return 1.0, 1.0
    med = np.median(np.array(ratios), axis=0)
    return float(1.0 / med[0]), float(1.0 / med[1])

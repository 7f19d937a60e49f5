"""Inject known problems into real data with a fixed seed, so ground truth is exact.

Used by ``make demo``, the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from despina.data.sources import digits_arrays


@dataclass
class GroundTruth:
    """Ids (relative paths) of the samples each injected problem touched."""

    label_flips: dict[str, str] = field(default_factory=dict)  # id -> true label
    blurred: list[str] = field(default_factory=list)
    darkened: list[str] = field(default_factory=list)
    near_duplicates: list[tuple[str, str]] = field(default_factory=list)  # (original, copy)
    corrupt: list[str] = field(default_factory=list)


def _write(path: Path, rgb_or_gray: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = rgb_or_gray if rgb_or_gray.ndim == 2 else cv2.cvtColor(rgb_or_gray, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def export_digits(folder: Path, size: int = 16) -> dict[str, int]:
    """Write scikit-learn's digits as PNGs (``folder/<label>/<index>.png``) of ``size`` px."""
    images, labels = digits_arrays()
    ids = {}
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        big = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR) if size != 8 else img
        rel = f"{y}/{i:04d}.png"
        _write(folder / rel, big)
        ids[rel] = int(y)
    return ids


def _read(path: Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise OSError(f"could not read {path}")
    return np.asarray(img)


def _shift(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    m = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def near_copy(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``img`` with one small change of the given kind."""
    if kind == "shift":
        return _shift(img, int(rng.choice([-1, 1])), 0)
    if kind == "noise":
        noisy = img.astype(np.float32) + rng.normal(0, 4, img.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)
    if kind == "brightness":
        return np.clip(img.astype(np.int16) - 25, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown near-copy kind {kind!r}")


def inject_problems(
    folder: Path,
    seed: int = 0,
    flip_fraction: float = 0.05,
    blurred: int = 20,
    darkened: int = 20,
    near_duplicates: int = 10,
    corrupt: int = 5,
) -> GroundTruth:
    """Change a class-folder dataset in place; every touched sample is disjoint from the others."""
    rng = np.random.default_rng(seed)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    classes = sorted({f.split("/")[0] for f in files})
    order = [files[i] for i in rng.permutation(len(files))]
    n_flip = round(flip_fraction * len(files))
    take = iter(order)
    gt = GroundTruth()
    for _ in range(n_flip):
        rel = next(take)
        true = rel.split("/")[0]
        new = str(rng.choice([c for c in classes if c != true]))
        dest = f"{new}/{Path(rel).name}"
        shutil.move(str(folder / rel), str(folder / dest))
        gt.label_flips[dest] = true
    for _ in range(blurred):
        rel = next(take)
        img = _read(folder / rel)
        _write(folder / rel, cv2.GaussianBlur(img, (0, 0), sigmaX=1.2))
        gt.blurred.append(rel)
    for _ in range(darkened):
        rel = next(take)
        img = _read(folder / rel)
        _write(folder / rel, (img.astype(np.float32) * 0.3).astype(np.uint8))
        gt.darkened.append(rel)
    kinds = ["shift", "noise", "brightness"]
    for j in range(near_duplicates):
        rel = next(take)
        img = _read(folder / rel)
        copy = f"{Path(rel).parent.as_posix()}/copy_{Path(rel).stem}.png"
        _write(folder / copy, near_copy(img, kinds[j % len(kinds)], rng))
        gt.near_duplicates.append((rel, copy))
    broken = [
        ("zero.png", b""),
        ("text.png", b"this is not an image\n"),
        ("random.jpg", rng.integers(0, 256, 600, dtype=np.uint8).tobytes()),
    ]
    _ok, png = cv2.imencode(".png", _read(folder / order[-1]))
    _ok2, jpg = cv2.imencode(".jpg", _read(folder / order[-2], cv2.IMREAD_COLOR))
    broken += [
        ("truncated.png", png.tobytes()[: len(png) // 2]),
        ("truncated.jpg", jpg.tobytes()[: len(jpg) // 2]),
    ]
    for k in range(corrupt):
        name, data = broken[k % len(broken)]
        rel = f"{classes[k % len(classes)]}/broken_{k}_{name}"
        (folder / rel).write_bytes(data)
        gt.corrupt.append(rel)
    return gt

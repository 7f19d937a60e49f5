"""``despina train-detector``: learn where objects are from a classification dataset and
background photos, and save the detector beside a model for the ``learned`` extractor."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from despina.core.artifacts import DETECTOR_DIR, FORMAT_VERSION
from despina.core.errors import DataError, NotFoundError
from despina.data.decode import decode_bytes, decode_image

THRESHOLD = 0.3  # heatmap peak that counts as an object
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def load_backgrounds(folder: str | Path, max_pixels: int = 64_000_000) -> list[np.ndarray]:
    """Every readable image under ``folder`` (recursively) as RGB uint8."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise NotFoundError(f"--backgrounds {root} is not a folder of photos")
    photos = []
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                path = Path(dirpath) / name
                dec = decode_bytes(path.read_bytes(), str(path), max_pixels)
                if dec.image is not None and min(dec.image.shape[:2]) >= 32:
                    photos.append(dec.image)
    if not photos:
        raise DataError(
            f"no readable photo of at least 32x32 pixels under {root}; the detector pastes "
            "objects onto background photos (PNG or JPEG files)"
        )
    return photos


def train_detector_job(
    dataset: str,
    backgrounds: str | Path,
    out: str | Path,
    *,
    steps: int = 2000,
    max_objects: int = 20_000,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train on ``dataset``'s images pasted onto ``backgrounds``; write ``out/detector/``."""
    from despina.data.sources import load_source
    from despina.models.detector import STRIDE
    from despina.models.export import export_onnx
    from despina.training.detector import size_correction, train_detector

    records = load_source(dataset).records
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(records))[:max_objects]
    objects = []
    for i in pick:
        dec = decode_image(records[int(i)])
        if dec.image is not None:
            objects.append(dec.image)
    photos = load_backgrounds(backgrounds)
    side = int(np.median([max(o.shape[:2]) for o in objects])) if objects else 0
    # Objects are pasted at 1 to 2.5 times their size (at least 24 px) on canvases that
    # hold a few of them: 160 px for 28 px images.
    low = max(1.0, 24 / max(1, side))
    scale = (low, low * 2.5)
    canvas = int(min(512, max(160, -(-side * low * 5.7 // 32) * 32)))
    model = train_detector(
        objects,
        photos,
        steps=steps,
        size=canvas,
        scale=scale,
        seed=seed,
        on_step=on_step,
    )
    correction = size_correction(
        model, objects, photos, size=canvas, scale=scale, threshold=THRESHOLD, seed=seed
    )
    folder = Path(out).expanduser() / DETECTOR_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rng_check = np.random.default_rng(seed)
    diff = export_onnx(
        model,
        folder / "detector.onnx",
        rng_check.standard_normal((1, 3, 96, 128), dtype=np.float32),
        ("heat", "size", "offset"),
        dynamic={2: "h", 3: "w"},
        check=rng_check.standard_normal((1, 3, 160, 224), dtype=np.float32),  # another size
        atol=1e-3,
    )
    config = {
        "format_version": FORMAT_VERSION,
        "architecture": "CenterDetector",
        "stride": STRIDE,
        "pad": 32,
        "threshold": THRESHOLD,
        "size_correction": list(correction),
        "max_side": 1024,
        "canvas": canvas,
        "scale": list(scale),
        "steps": steps,
        "objects": len(objects),
        "backgrounds": len(photos),
        "dataset": str(dataset),
        "onnx_max_difference": diff,
    }
    (folder / "detector.json").write_text(json.dumps(config, indent=2))
    return {**config, "folder": str(folder)}

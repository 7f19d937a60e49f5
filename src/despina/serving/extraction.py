"""Object extraction: each extractor proposes boxes in an RGB image; the deployed
classifier then labels every crop. An extractor is a small class with one method,
``propose``, so adding one means writing that method and naming it in :func:`make_extractor`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from despina.core.artifacts import DETECTOR_DIR
from despina.core.boxes import box_iou
from despina.core.errors import ConfigError, ModelError, NotFoundError
from despina.jobs.model_folder import cascade_path
from despina.security.envelope import read_artifact


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels (x, y = top-left) with the extractor's confidence."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    def clip(self, width: int, height: int) -> Box | None:
        """This box cut to a ``width`` x ``height`` image; None if nothing is left."""
        x0, y0 = max(0, self.x), max(0, self.y)
        x1, y1 = min(width, self.x + self.w), min(height, self.y + self.h)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        return Box(x0, y0, x1 - x0, y1 - y0, self.score)


class Extractor(Protocol):
    name: str

    def propose(self, image: np.ndarray) -> list[Box]:
        """Boxes of the objects in an RGB uint8 image (H, W, 3), most confident first."""
        ...


def iou(a: Box, b: Box) -> float:
    return box_iou(a.as_list(), b.as_list())


def nms(boxes: list[Box], threshold: float) -> list[Box]:
    """Greedy non-maximum suppression: keep the best box, drop those overlapping it."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: -b.score):
        if all(iou(box, k) <= threshold for k in kept):
            kept.append(box)
    return kept


class WholeImage:
    """The whole image is the one object (the default: a classifier's own use case)."""

    name = "whole"

    def propose(self, image: np.ndarray) -> list[Box]:
        h, w = image.shape[:2]
        return [Box(0, 0, w, h, 1.0)]


class Contours:
    """Classical proposals for objects on plain backgrounds: pixels far from the border's
    colour (Otsu's threshold on that distance) or on strong edges, closed, split into
    connected components, boxed, and merged with non-maximum suppression."""

    name = "contours"

    def __init__(self, min_area: float = 0.002, max_boxes: int = 32, nms_iou: float = 0.3) -> None:
        self.min_area = min_area
        self.max_boxes = max_boxes
        self.nms_iou = nms_iou

    def propose(self, image: np.ndarray) -> list[Box]:
        h, w = image.shape[:2]
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        distance = cv2.absdiff(gray, np.full_like(gray, int(np.median(border))))
        _, mask = cv2.threshold(distance, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        edges = cv2.Canny(cv2.GaussianBlur(gray, (3, 3), 0), 50, 150)
        mask = cv2.bitwise_or(mask, edges)
        k = max(3, (min(h, w) // 64) | 1)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        boxes = []
        for x, y, bw, bh, area in stats[1:]:
            if bw * bh < self.min_area * h * w or (bw >= w - 1 and bh >= h - 1):
                continue
            fill = area / max(1, bw * bh)
            boxes.append(Box(int(x), int(y), int(bw), int(bh), float(min(1.0, fill + 0.2))))
        boxes = nms(boxes, self.nms_iou)[: self.max_boxes]
        return boxes or [Box(0, 0, w, h, 1.0)]


class Cascade:
    """An OpenCV Haar cascade that ships with OpenCV, by short name (``frontalface``)."""

    def __init__(self, cascade: str, min_size: int = 24) -> None:
        path = cascade_path(cascade)
        self.classifier = cv2.CascadeClassifier(str(path))
        self.name = f"cascade:{cascade}"
        self.min_size = min_size

    def propose(self, image: np.ndarray) -> list[Box]:
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        found, _, weights = self.classifier.detectMultiScale3(
            gray,
            scaleFactor=1.1,
            minNeighbors=5,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float64).ravel()))
        boxes = [
            Box(int(x), int(y), int(w), int(h), float(s))
            for (x, y, w, h), s in zip(found, scores, strict=True)
        ]
        return sorted(boxes, key=lambda b: -b.score)


class Learned:
    """The one-stage detector ``despina train-detector`` writes (``detector/`` beside the
    model): a centre heatmap and box sizes from one ONNX graph, decoded by peak finding."""

    name = "learned"

    def __init__(self, folder: str | Path, threshold: float | None = None) -> None:
        import onnxruntime as ort

        from despina.models.detector import decode_heatmap

        folder = Path(folder)
        if not (folder / "detector.onnx").is_file() or not (folder / "detector.json").is_file():
            raise NotFoundError(
                f"no trained detector in {folder}; build one with "
                "`despina train-detector DATASET --backgrounds DIR --out MODEL_DIR`"
            )
        try:
            self.config = json.loads(read_artifact(folder / "detector.json"))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(
                read_artifact(folder / "detector.onnx"), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelError(f"cannot load the detector in {folder}: {exc}") from exc
        self.threshold = float(threshold or self.config.get("threshold", 0.3))
        # Calibrated at training time (undoes the detector's median size bias); detectors
        # written before there was one leave sizes as they are.
        cw, ch = self.config.get("size_correction", (1.0, 1.0))
        self.size_correction = (float(cw), float(ch))
        self._decode = decode_heatmap

    def propose(self, image: np.ndarray) -> list[Box]:
        from despina.models.detector import prepare_canvas

        x, scale = prepare_canvas(image, int(self.config["pad"]), self.config.get("max_side"))
        heat, size, offset = self.session.run(None, {"x": x})
        found = self._decode(
            heat[0, 0],
            size[0],
            offset[0],
            int(self.config["stride"]),
            self.threshold,
            size_scale=self.size_correction,
        )
        boxes = [
            Box(round(x0 / scale), round(y0 / scale), round(w / scale), round(h / scale), s)
            for x0, y0, w, h, s in found
        ]
        return nms([b for b in boxes if b.w > 1 and b.h > 1], 0.5)


EXTRACTORS = ("whole", "contours", "cascade:NAME", "learned")


def make_extractor(spec: str, model_dir: str | Path | None = None) -> Extractor:
    """The extractor a deployment names: ``whole``, ``contours``, ``cascade:NAME`` or
    ``learned`` (its detector read from ``MODEL_DIR/detector``)."""
    if spec == "whole":
        return WholeImage()
    if spec == "contours":
        return Contours()
    if spec.startswith("cascade:"):
        return Cascade(spec.split(":", 1)[1])
    if spec == "learned":
        if model_dir is None:
            raise ConfigError("the learned extractor needs a model folder")
        return Learned(Path(model_dir) / DETECTOR_DIR)
    raise ConfigError(f"unknown extractor {spec!r}; use one of {', '.join(EXTRACTORS)}")

"""Extractors on real images: whole, contours, OpenCV's face cascade, the learned detector."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from despina.core.errors import ConfigError, NotFoundError
from despina.data.decode import as_rgb
from despina.data.sources import digits_arrays
from despina.serving.extraction import Box, Contours, WholeImage, iou, make_extractor, nms
from despina.training.detector import synthesize


def _recall(found: list[Box], truth: np.ndarray, threshold: float = 0.5) -> float:
    boxes = [Box(*map(int, b)) for b in truth]
    return sum(any(iou(t, f) >= threshold for f in found) for t in boxes) / max(1, len(boxes))


def _digit_objects(n: int = 200) -> list[np.ndarray]:
    images, _ = digits_arrays()  # dark ink on white paper, 8x8
    return [as_rgb(cv2.resize(im, (24, 24), interpolation=cv2.INTER_NEAREST)) for im in images[:n]]


def test_whole_is_the_image() -> None:
    assert WholeImage().propose(np.zeros((30, 40, 3), np.uint8)) == [Box(0, 0, 40, 30, 1.0)]


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    kept = nms([Box(0, 0, 10, 10, 0.5), Box(1, 1, 10, 10, 0.9), Box(50, 50, 5, 5, 0.1)], 0.3)
    assert kept == [Box(1, 1, 10, 10, 0.9), Box(50, 50, 5, 5, 0.1)]


def test_contours_find_objects_on_a_plain_background() -> None:
    rng = np.random.default_rng(0)
    plain = [np.full((200, 200, 3), 255, np.uint8)]
    recalls = []
    for _ in range(10):
        canvas = synthesize(_digit_objects(), plain, rng, 160, (2, 4), (1.0, 1.5))
        recalls.append(_recall(Contours().propose(canvas.image), canvas.boxes))
    assert np.mean(recalls) >= 0.8


def test_face_cascade_finds_the_astronaut_and_no_face_in_coffee() -> None:
    faces = make_extractor("cascade:frontalface")
    [face] = faces.propose(data.astronaut())
    assert 150 <= face.x + face.w / 2 <= 300 and 50 <= face.y + face.h / 2 <= 200
    assert faces.propose(data.coffee()) == []


def test_unknown_extractors_are_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="frontalface"):
        make_extractor("cascade:martian")
    with pytest.raises(ConfigError, match="whole, contours"):
        make_extractor("sonar")
    with pytest.raises(NotFoundError, match="train-detector"):
        make_extractor("learned", Path("/nonexistent"))


def test_learned_detector_trains_from_pasted_images_and_finds_new_ones(tmp_path: Path) -> None:
    from despina.jobs.detector import train_detector_job

    images, labels = digits_arrays()
    for i in range(300):
        folder = tmp_path / "digits" / str(labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), images[i])
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("camera", "coins", "grass", "brick", "page"):
        cv2.imwrite(str(photos / f"{name}.png"), getattr(data, name)())
    info = train_detector_job(str(tmp_path / "digits"), photos, tmp_path / "model", steps=150)
    assert info["onnx_max_difference"] < 1e-3
    detector = make_extractor("learned", tmp_path / "model")
    # Digits it never saw, on a photo it never saw.
    rng = np.random.default_rng(1)
    held_out = [as_rgb(im) for im in images[1000:1300]]
    recalls = []
    for _ in range(20):
        canvas = synthesize(held_out, [data.rocket()], rng, 192, (1, 3), tuple(info["scale"]))
        recalls.append(_recall(detector.propose(canvas.image), canvas.boxes))
    assert np.mean(recalls) >= 0.7, recalls
    # The size bias measured on validation canvases is small, and serving applies it
    # around each box's centre.
    cw, ch = info["size_correction"]
    assert 0.8 < cw < 1.25 and 0.8 < ch < 1.25
    cfg_path = tmp_path / "model" / "detector" / "detector.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["size_correction"] = [1.0, 1.0]
    cfg_path.write_text(json.dumps(cfg))
    plain = make_extractor("learned", tmp_path / "model").propose(canvas.image)
    cfg["size_correction"] = [0.5, 2.0]
    cfg_path.write_text(json.dumps(cfg))
    scaled = make_extractor("learned", tmp_path / "model").propose(canvas.image)
    assert plain and len(scaled) == len(plain)
    for a, b in zip(plain, scaled, strict=True):
        assert abs(b.w - a.w * 0.5) <= 1 and abs(b.h - a.h * 2.0) <= 1
        assert abs((b.x + b.w / 2) - (a.x + a.w / 2)) <= 1
        assert abs((b.y + b.h / 2) - (a.y + a.h / 2)) <= 1


def test_boxes_over_the_edge_are_cut_to_the_image() -> None:
    assert Box(-5, -5, 20, 20, 0.9).clip(10, 8) == Box(0, 0, 10, 8, 0.9)
    assert Box(9, 2, 10, 3).clip(10, 8) is None  # one pixel wide once cut
    assert Box(50, 50, 5, 5).clip(10, 8) is None

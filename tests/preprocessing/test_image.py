from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from despina.core.errors import ModelError
from despina.preprocessing.image import ImagePipeline, resize_image


@pytest.mark.parametrize("fit", ["resize", "pad", "crop"])
def test_every_fit_gives_the_model_size(fit: str) -> None:
    img = np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    assert resize_image(img, 16, fit).shape == (16, 16, 3)  # type: ignore[arg-type]


def test_pad_keeps_the_aspect_ratio_and_fills_with_the_border() -> None:
    img = np.full((10, 20, 3), 200, np.uint8)
    out = resize_image(img, 20, "pad")
    assert out[0, 0].tolist() == [200, 200, 200]


def test_pipeline_fits_grayscale_for_gray_data_and_normalizes() -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (20, 8, 8, 1), dtype=np.uint8).repeat(3, axis=3)
    pipe = ImagePipeline(8).fit(gray)
    assert pipe.mode_ == "grayscale" and pipe.channels == 1
    x = pipe.transform_resized(gray)
    assert x.shape == (20, 1, 8, 8)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2


def test_pipeline_round_trips_through_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 255, (10, 12, 12, 3), dtype=np.uint8)
    pipe = ImagePipeline(12).fit(imgs)
    pipe.save(tmp_path / "p.json")
    back = ImagePipeline.load(tmp_path / "p.json")
    raw = [rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)]
    np.testing.assert_array_equal(pipe.transform(raw), back.transform(raw))


def test_unfitted_pipeline_says_so() -> None:
    with pytest.raises(ModelError, match="fit"):
        ImagePipeline(8).transform_resized(np.zeros((1, 8, 8, 3), np.uint8))

from __future__ import annotations

import cv2
import numpy as np

from despina.audit.image_stats import STAT_NAMES, _blur_effect, _box, compute_features
from tests.audit.helpers import digits_images


def test_box_filter_matches_opencv_and_is_deterministic() -> None:
    x = np.random.default_rng(0).random((16, 20))
    np.testing.assert_allclose(_box(x, 5, 0), cv2.blur(x, (1, 5)), atol=1e-12)
    np.testing.assert_allclose(_box(x, 5, 1), cv2.blur(x, (5, 1)), atol=1e-12)
    assert np.array_equal(_box(x, 5, 0), _box(x.copy(), 5, 0))


def test_blur_effect_rises_with_blur() -> None:
    images, _ = digits_images(20, size=32)
    gray = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32) for im in images]
    sharp = [_blur_effect(g) for g in gray]
    blurred = [_blur_effect(cv2.GaussianBlur(g, (0, 0), 1.5)) for g in gray]
    assert all(b > s for s, b in zip(sharp, blurred, strict=True))


def test_features_are_scale_free_for_brightness_statistics() -> None:
    images, _ = digits_images(1, size=32)
    f = compute_features(images[0])
    assert len(f.stats) == len(STAT_NAMES)
    darker = compute_features((images[0] * 0.5).astype(np.uint8))
    i = STAT_NAMES.index("brightness")
    assert darker.stats[i] < f.stats[i]
    assert f.pixel_hash != darker.pixel_hash and f.thumb.shape == (32, 32)

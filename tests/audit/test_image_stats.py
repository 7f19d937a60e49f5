from __future__ import annotations

import cv2
import numpy as np

from despina.audit.image_stats import (
    STAT_NAMES,
    _blur_effect,
    _percentile,
    _uint8_percentile,
    compute_features,
    image_statistics,
)
from tests.audit.helpers import digits_images


def _misaligned_copy(x: np.ndarray, offset: int) -> np.ndarray:
    """``x`` in a buffer that starts ``offset`` bytes past an allocation."""
    raw = np.empty(x.nbytes + offset, np.uint8)
    out = raw[offset:].view(x.dtype).reshape(x.shape)
    out[...] = x
    return out


def test_blur_effect_matches_its_definition_and_ignores_buffer_alignment() -> None:
    gray = (np.random.default_rng(0).random((40, 36)) * 255).astype(np.uint8)
    g = gray.astype(np.float64)
    k = max(3, min(9, (min(g.shape) // 8) | 1))
    expected = []
    for axis, ksize in ((0, (1, k)), (1, (k, 1))):
        d_f = np.abs(np.diff(g, axis=axis))
        d_b = np.abs(np.diff(cv2.blur(g, ksize), axis=axis))
        expected.append((d_f.sum() - np.maximum(0, d_f - d_b).sum()) / d_f.sum())
    assert abs(_blur_effect(gray) - max(expected)) < 1e-5
    values = {_blur_effect(_misaligned_copy(gray, off)) for off in (0, 1, 3, 8, 17)}
    assert len(values) == 1


def test_fast_percentiles_equal_numpy() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 4096):
        u = rng.integers(0, 256, n, dtype=np.uint8)
        f = rng.random(n).astype(np.float32)
        for q in (0, 1, 50, 99, 100):
            assert abs(_uint8_percentile(u, q) - np.percentile(u, q)) < 1e-9
            assert abs(_percentile(f, q) - np.percentile(f, q)) < 1e-6
            assert abs(_percentile(f, q, np.sqrt) - np.percentile(np.sqrt(f), q)) < 1e-6


def test_blur_effect_rises_with_blur() -> None:
    images, _ = digits_images(20, size=32)
    gray = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32) for im in images]
    sharp = [_blur_effect(g) for g in gray]
    blurred = [_blur_effect(cv2.GaussianBlur(g, (0, 0), 1.5)) for g in gray]
    assert all(b > s for s, b in zip(sharp, blurred, strict=True))


def test_the_blur_effect_is_computed_only_on_images_without_the_coarse_band() -> None:
    """It decides blur only there (defect_margins); on larger images it would be waste."""
    small, _ = digits_images(1, size=16)
    large, _ = digits_images(1, size=48)
    blur, coarse = STAT_NAMES.index("blur_effect"), STAT_NAMES.index("coarse_ratio")
    s, big = image_statistics(small[0]), image_statistics(large[0])
    assert np.isnan(s[coarse]) and 0.0 <= s[blur] <= 1.0
    assert np.isfinite(big[coarse]) and np.isnan(big[blur])


def test_features_are_scale_free_for_brightness_statistics() -> None:
    images, _ = digits_images(1, size=32)
    f = compute_features(images[0])
    assert len(f.stats) == len(STAT_NAMES)
    darker = compute_features((images[0] * 0.5).astype(np.uint8))
    i = STAT_NAMES.index("brightness")
    assert darker.stats[i] < f.stats[i]
    assert f.pixel_hash != darker.pixel_hash and f.thumb.shape == (32, 32)


def test_histogram_statistics_equal_the_same_statistics_over_pixels() -> None:
    rng = np.random.default_rng(3)
    for shape in ((1, 1, 3), (7, 5, 3), (32, 32, 3), (64, 48, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        stats = dict(zip(STAT_NAMES, compute_features(image).stats, strict=True))
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0
        assert abs(stats["brightness"] - gray.mean()) < 1e-9
        assert abs(stats["contrast"] - gray.std()) < 1e-9
        assert abs(stats["highlights"] - (gray >= 250 / 255).mean()) < 1e-12
        # p05 and p95: the smallest grey level at or below which that share of pixels lies.
        pixels = gray.ravel()
        for name, q in (("p05", 0.05), ("p95", 0.95)):
            at_or_below = (pixels[None, :] <= np.arange(256)[:, None] / 255 + 1e-12).mean(1)
            assert abs(stats[name] - int(np.argmax(at_or_below >= q - 1e-12)) / 255) < 1e-9
        assert (stats["width"], stats["height"]) == (shape[1], shape[0])


def test_image_statistics_are_the_features_statistics() -> None:
    rng = np.random.default_rng(2)
    images = [*digits_images(5)[0], rng.integers(0, 256, (40, 700, 3), np.uint8)]
    images.append(rng.integers(0, 256, (33, 31, 3), np.uint8))
    for im in images:
        assert np.array_equal(image_statistics(im), compute_features(im).stats, equal_nan=True)

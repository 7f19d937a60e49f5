from __future__ import annotations

import cv2
import numpy as np

from despina.audit.checks import (
    DefectCheck,
    DuplicateCheck,
    ImbalanceCheck,
    LabelCheck,
    OutlierCheck,
)
from despina.audit.checks.pairs import hash_distance, phash_bits, shifted_ncc
from despina.audit.image_stats import compute_features
from tests.audit.helpers import context_for, digits_images, one_hot_probs, photo_tiles


def test_label_check_flags_labels_the_model_contradicts() -> None:
    images, y = digits_images(300)
    probs = one_hot_probs(y, 10)
    given = y.copy()
    flipped = np.arange(0, 300, 15)
    given[flipped] = (y[flipped] + 3) % 10
    res = LabelCheck().run(context_for(list(images), given, probs))
    assert set(np.flatnonzero(res.flags)) == set(flipped)
    assert (res.details["suggested"][flipped] == y[flipped]).all()
    assert res.scores[flipped].max() < res.scores[np.setdiff1d(np.arange(300), flipped)].min()


def test_outlier_check_flags_a_sample_far_from_all_others() -> None:
    rng = np.random.default_rng(0)
    images, y = digits_images(200)
    centers = rng.normal(size=(10, 32))
    emb = centers[y] + rng.normal(scale=0.2, size=(200, 32))
    emb[7] = rng.normal(size=32) * 5 - 20  # nowhere near any class
    res = OutlierCheck().run(context_for(list(images), y, embeddings=emb))
    assert res.flags[7]
    assert res.flags.sum() <= 3
    assert res.scores[7] == res.scores.min()


def test_outlier_check_finds_a_foreign_cluster_but_leaves_mislabeled_samples_alone() -> None:
    """A tight cluster of foreign samples with random labels is flagged, however close its
    members are to each other; samples sitting among the class the model recognizes but
    carrying another label are the label check's, not outliers."""
    rng = np.random.default_rng(0)
    n_in, n_out = 400, 20
    y = rng.integers(0, 8, n_in + n_out)
    centers = rng.normal(size=(9, 32)) * 3
    emb = centers[y] + rng.normal(scale=0.5, size=(n_in + n_out, 32))
    emb[n_in:] = centers[8] + rng.normal(scale=0.5, size=(n_out, 32))  # an unknown class
    truth = y.copy()
    mislabeled = np.arange(0, 40, 4)
    y[mislabeled] = (truth[mislabeled] + 1) % 8
    probs = one_hot_probs(truth, 8)  # the model recognizes the true classes...
    probs[n_in:] = 1 / 8  # ...and is unsure about the unknown one
    images, _ = digits_images(n_in + n_out)
    res = OutlierCheck().run(context_for(list(images), y, probs, emb))
    assert res.flags[n_in:].mean() >= 0.9
    assert not res.flags[mislabeled].any()
    assert res.flags[:n_in].sum() <= 4


def test_duplicate_check_groups_exact_and_shifted_copies_and_keeps_one() -> None:
    images, y = digits_images(100)
    images = list(images)
    images.append(images[5].copy())  # exact copy
    m = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)
    shifted = cv2.warpAffine(images[9], m, (16, 16), borderMode=cv2.BORDER_REPLICATE)
    images.append(shifted)  # 1-px shifted copy
    y = np.r_[y, y[5], y[9]]
    res = DuplicateCheck().run(context_for(images, y))
    groups = [set(g) for g in res.details["groups"]]
    assert {5, 100} in groups and {9, 101} in groups
    assert res.flags.sum() == 2  # one member of each set is kept


def test_duplicate_check_finds_the_same_sets_on_one_thread_and_on_two() -> None:
    """Its searches and measurements spread over threads; which pairs join must not depend
    on how many (enough images that the pairs fill several chunks)."""
    images, y = digits_images(1797, size=32)
    rng = np.random.default_rng(0)
    m = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)
    for i in range(0, 400, 20):  # shifted, noisy copies
        moved = cv2.warpAffine(images[i], m, (32, 32), borderMode=cv2.BORDER_REPLICATE)
        images.append(np.clip(moved + rng.normal(0, 3, moved.shape), 0, 255).astype(np.uint8))
        y = np.r_[y, y[i]]
    results = []
    for threads in (1, 2):
        ctx = context_for(list(images), y)
        ctx.threads = threads
        results.append(DuplicateCheck().run(ctx))
    one, two = results
    assert one.details["groups"] == two.details["groups"]
    assert np.array_equal(one.scores, two.scores)
    found = sum({i, 1797 + k} <= set(g) for k, i in enumerate(range(0, 400, 20))
                for g in one.details["groups"])  # fmt: skip
    assert found >= 18


def test_shifted_ncc_is_one_for_a_shift_and_lower_for_different_images() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((1, 32, 32)).astype(np.float32)
    b = np.roll(a, 1, axis=2)
    c = rng.random((1, 32, 32)).astype(np.float32)
    assert shifted_ncc(a, b)[0] > 0.99
    assert shifted_ncc(a, c)[0] < 0.5


def test_defect_check_finds_dark_blurry_blank_and_corrupt_images() -> None:
    images, y = digits_images(200)
    imgs: list[np.ndarray | None] = list(images)
    imgs[3] = (images[3] * 0.3).astype(np.uint8)
    imgs[4] = cv2.GaussianBlur(images[4], (0, 0), 1.5)
    noise = np.random.default_rng(0).normal(0, 2, (16, 16, 3))
    imgs[5] = np.clip(235 + noise, 0, 255).astype(np.uint8)
    imgs[6] = None
    res = DefectCheck().run(context_for(imgs, y))
    d = res.details["defects"]
    assert "dark" in d[3] and "blurry" in d[4] and "low_information" in d[5]
    assert d[6] == ["corrupt"] and res.scores[6] == 0
    assert res.flags.sum() <= 4 + 6  # few false alarms on clean digits


def test_mild_blur_is_found_on_photos_without_flagging_smooth_ones() -> None:
    tiles = photo_tiles()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(tiles))
    blurred = []
    for i in order:
        b = cv2.GaussianBlur(tiles[i], (0, 0), 1.0)
        if np.abs(b.astype(float) - tiles[i]).mean() > 1.5:  # the blur is visible
            tiles[i] = b
            blurred.append(int(i))
        if len(blurred) == 12:
            break
    res = DefectCheck().run(context_for(tiles, np.zeros(len(tiles), dtype=np.int64)))
    blurry = np.array(["blurry" in d for d in res.details["defects"]])
    clean = np.setdiff1d(np.arange(len(tiles)), blurred)
    assert blurry[blurred].mean() >= 0.4  # 0.58 measured; the edge statistics alone: 0.0
    assert blurry[clean].mean() <= 0.06  # 0.026 measured (smooth shading, fur)


def test_edge_statistics_decide_blur_only_on_images_too_small_for_the_coarse_band() -> None:
    from despina.audit.checks.defect import defect_margins
    from despina.audit.image_stats import STAT_NAMES

    edges = [STAT_NAMES.index("sharpness"), STAT_NAMES.index("blur_effect")]

    def edge_blurred_only(images: list[np.ndarray], i: int) -> bool:
        """Is row i blurry when only its edge statistics say so (those of a strong blur)?"""
        values = np.stack([compute_features(im).stats for im in images])
        values[i, edges] = compute_features(cv2.GaussianBlur(images[i], (0, 0), 3.0)).stats[edges]
        return bool(defect_margins(values)["blurry"][i] < 0)

    # A photo tile keeps its spectrum's shape: the edge statistics' long tail on photos
    # does not make it blurry. A 16 px digit has no coarse band: its edges decide.
    assert not edge_blurred_only(photo_tiles()[:80], 40)
    assert edge_blurred_only(digits_images(80)[0], 5)


def test_an_image_whose_brightest_part_is_under_a_quarter_of_full_scale_is_dark() -> None:
    tiles = photo_tiles()[:80]
    p95 = [np.percentile(cv2.cvtColor(t, cv2.COLOR_RGB2GRAY), 95) for t in tiles]
    i = int(np.argmax(p95))
    assert p95[i] >= 240  # so a quarter of it lies just under a quarter of full scale
    tiles[i] = (tiles[i] * 0.25).astype(np.uint8)
    res = DefectCheck().run(context_for(tiles, np.zeros(len(tiles), dtype=np.int64)))
    assert "dark" in res.details["defects"][i]


def test_band_ratios_fall_with_blur_but_not_with_smooth_content() -> None:
    from despina.audit.image_stats import STAT_NAMES

    fine, coarse = STAT_NAMES.index("fine_ratio"), STAT_NAMES.index("coarse_ratio")
    tile = photo_tiles()[40]
    sharp = compute_features(tile).stats
    mild = compute_features(cv2.GaussianBlur(tile, (0, 0), 1.0)).stats
    strong = compute_features(cv2.GaussianBlur(tile, (0, 0), 2.5)).stats
    assert mild[fine] < sharp[fine] - 0.5
    assert strong[coarse] < sharp[coarse] - 0.5
    # A smooth picture with sensor noise keeps its fine band: it is not a blurred one.
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(tile, (0, 0), 4.0).astype(np.float64)
    noisy = np.clip(smooth + rng.normal(0, 2.0, smooth.shape), 0, 255).astype(np.uint8)
    assert compute_features(noisy).stats[fine] > mild[fine] + 0.5
    # Images too small for the coarse band have none (NaN), and are still checked.
    small = digits_images(1)[0][0]
    assert np.isnan(compute_features(small).stats[coarse])


def test_defect_margins_accept_a_reference_saved_before_the_band_ratios() -> None:
    from despina.audit.checks.defect import defect_margins, defect_reference

    images, _ = digits_images(60)
    images[3] = cv2.GaussianBlur(images[3], (0, 0), 1.5)
    values = np.stack([compute_features(im).stats for im in images])
    old = {k: v for k, v in defect_reference(values).items() if not k.endswith("_ratio")}
    margins = defect_margins(values, old)
    assert margins["blurry"][3] < 0 and np.isfinite(margins["blurry"]).all()


def test_one_images_defect_margins_equal_its_row_of_the_matrix() -> None:
    """Serving passes one stats vector (NumPy scalars); the audit a matrix."""
    from despina.audit.checks.defect import defect_margins, defect_reference

    photos = photo_tiles()[:30]
    small, _ = digits_images(30)  # no coarse band: the edge rule decides blur
    for images in (photos, small):
        values = np.stack([compute_features(im).stats for im in images])
        values[1] = compute_features(cv2.GaussianBlur(images[1], (0, 0), 2.0)).stats
        values[2] = compute_features((images[2] // 5).astype(np.uint8)).stats
        ref = defect_reference(values)
        old = {k: v for k, v in ref.items() if not k.endswith("_ratio")}
        for reference in (ref, old):
            matrix = defect_margins(values, reference)
            for i in range(len(values)):
                one = defect_margins(values[i], reference)
                assert set(one) == set(matrix)
                for name, column in matrix.items():
                    assert np.ndim(one[name]) == 0
                    assert float(one[name]) == float(column[i]), (name, i)


def test_shifted_copies_of_textured_photos_are_found_but_look_alikes_are_not() -> None:
    from despina.audit.checks.pairs import aligned_ncc

    tiles = photo_tiles()
    n = len(tiles)
    shift = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)
    copies, hard = [], 0
    for i in range(0, n, 9):
        copy = cv2.warpAffine(tiles[i], shift, (64, 64), borderMode=cv2.BORDER_REFLECT)
        a, b = (compute_features(x).thumb for x in (tiles[i], copy))
        soft = [cv2.GaussianBlur(t, (0, 0), 0.7)[None] for t in (a, b)]
        hard += int(aligned_ncc(*soft)[0] < 0.996)  # what the fixed threshold misses
        copies.append((i, copy))
    res = DuplicateCheck().run(
        context_for([*tiles, *(c for _, c in copies)], np.zeros(n + len(copies), np.int64))
    )
    group = res.details["group_of"]
    found = [group[i] >= 0 and group[i] == group[n + k] for k, (i, _) in enumerate(copies)]
    assert hard >= 3 and np.mean(found) >= 0.9
    # Every set holds an injected pair: no distinct tiles were joined.
    sets = {int(group[n + k]) for k in range(len(copies))}
    assert set(group[group >= 0].tolist()) <= sets
    # Distinct handwritten digits, which correlate highly, stay apart: at most the 0.5% of
    # untouched images that the near-duplicate target allows (one of 300; two 2s by one
    # writer correlate at 0.987 with nothing else near either).
    digits, y = digits_images(300, size=32)
    assert DuplicateCheck().run(context_for(digits, y)).flags.sum() <= 1


def test_one_layout_at_other_brightnesses_is_not_a_copy_but_a_brightened_copy_is() -> None:
    """A grey panel on black correlates almost exactly with the same panel at any gain;
    only a copy within the tone bound joins it, however high the correlation."""
    digits, y = digits_images(200, size=32)
    rng = np.random.default_rng(0)
    panel = np.zeros((32, 32, 3), np.float64)
    panel[10:, 9:] = 1.0
    grey = [np.clip(panel * v + rng.normal(0, 1.5, panel.shape), 0, 255).astype(np.uint8)
            for v in (80.0, 120.0, 200.0, 88.0)]  # fmt: skip
    res = DuplicateCheck().run(context_for([*digits, *grey], np.r_[y, [0, 0, 0, 0]]))
    n = len(digits)
    group = res.details["group_of"]
    assert group[n] >= 0 and group[n] == group[n + 3]  # x1.1 and noise: a copy
    assert group[n + 1] == -1 and group[n + 2] == -1


def test_a_rival_is_the_best_match_outside_both_sets() -> None:
    from despina.audit.checks.duplicate import _Ranked, _UnionFind

    pairs = np.array([[0, 3], [0, 1], [0, 2]])  # measured in any order
    ranked = _Ranked.of(pairs, np.array([0.7, 0.99, 0.98], np.float32), 4)
    uf = _UnionFind(4)
    assert ranked.rival(0, 1, uf) == (np.float32(0.98), 2)  # the partner is not a rival
    uf.union(0, 2)  # 2 is already a copy of 0: not a rival either
    assert ranked.rival(0, 1, uf) == (np.float32(0.7), 3)
    assert ranked.rival(1, 0, uf) == (-1.0, -1)  # nothing else measured
    assert ranked.rival(3, 2, uf) == (-1.0, -1)  # its one match, 0, is in 2's set
    tied = _Ranked.of(np.array([[0, 1], [0, 2]]), np.array([0.9, 0.9], np.float32), 3)
    assert tied.rival(0, 0, _UnionFind(3))[1] == 2  # a tie: the higher index first


def test_cropped_and_noisy_copies_are_found_and_distinct_look_alikes_are_not() -> None:
    from despina.audit.checks.pairs import affine_ncc

    rng = np.random.default_rng(3)
    digits, y = digits_images(400, size=32)
    n = len(digits)
    copies = []
    for k, i in enumerate(rng.choice(n, 24, replace=False)):
        im = digits[int(i)]
        if k % 2:  # up to a tenth cut, unevenly, and resized back
            cx, cy = rng.integers(1, 4, 2)
            left, top = int(rng.integers(0, cx + 1)), int(rng.integers(0, cy + 1))
            part = im[top : 32 - (cy - top), left : 32 - (cx - left)]
            copy = cv2.resize(part, (32, 32), interpolation=cv2.INTER_LINEAR)
        else:  # shifted a pixel, with noise
            shift = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)
            moved = cv2.warpAffine(im, shift, (32, 32), borderMode=cv2.BORDER_REPLICATE)
            copy = np.clip(moved + rng.normal(0, 4, moved.shape), 0, 255).astype(np.uint8)
        copies.append((int(i), copy))
    res = DuplicateCheck().run(
        context_for([*digits, *(c for _, c in copies)], np.r_[y, [y[i] for i, _ in copies]])
    )
    group = res.details["group_of"]
    found = [group[i] >= 0 and group[i] == group[n + k] for k, (i, _) in enumerate(copies)]
    assert np.mean(found) >= 0.9
    # No set joins two distinct digits.
    for g in res.details["groups"]:
        originals = {i if i < n else copies[i - n][0] for i in g}
        assert len(originals) == 1, g
    # The continuous alignment is what lifts a crop above distinct look-alikes.
    i, crop = copies[1]
    soft = [cv2.GaussianBlur(compute_features(x).thumb, (0, 0), 0.7) for x in (digits[i], crop)]
    assert affine_ncc(soft[0], soft[1]) > 0.999


def test_grayscale_is_flagged_only_in_a_colour_dataset() -> None:
    rng = np.random.default_rng(0)
    colour = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(40)]
    gray = np.repeat(rng.integers(0, 255, (16, 16, 1), dtype=np.uint8), 3, axis=2)
    res = DefectCheck().run(context_for([*colour, gray], np.r_[np.arange(40) % 2, 0]))
    assert "grayscale" in res.details["defects"][40]
    assert not any("grayscale" in d for d in res.details["defects"][:40])


def test_imbalance_flags_a_small_class() -> None:
    images, y = digits_images(300)
    keep = np.r_[np.flatnonzero(y != 3), np.flatnonzero(y == 3)[:3]]
    res = ImbalanceCheck().run(context_for([images[i] for i in keep], y[keep]))
    assert res.details["minority_classes"] == ["3"]
    assert res.flags.sum() == 3 and res.score < 1


def test_outlier_check_flags_a_foreign_cluster_that_hides_behind_its_own_members() -> None:
    rng = np.random.default_rng(1)
    images, y = digits_images(300)
    centers = rng.normal(size=(10, 32)) * 3
    emb = centers[y] + rng.normal(scale=0.3, size=(300, 32))
    foreign = np.arange(280, 300)  # a tight cluster of 20 with random labels
    emb[foreign] = rng.normal(size=32) * 3 + rng.normal(scale=0.3, size=(20, 32))
    y = y.copy()
    y[foreign] = rng.integers(0, 10, 20)
    res = OutlierCheck().run(context_for(list(images), y, embeddings=emb))
    assert res.flags[foreign].mean() >= 0.8
    assert res.flags[:280].mean() <= 0.02


def test_aligned_ncc_finds_half_pixel_shifts_and_slight_zoom() -> None:
    from despina.audit.checks.pairs import aligned_ncc

    images, _ = digits_images(40, size=32)
    gray = np.stack(
        [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255 for im in images]
    )
    m = np.array([[1, 0, 0.5], [0, 1, 0]], dtype=np.float32)
    half = np.stack([cv2.warpAffine(g, m, (32, 32), borderMode=cv2.BORDER_REPLICATE) for g in gray])
    zoom = np.stack([cv2.resize(g[1:-1, 1:-1], (32, 32)) for g in gray])
    assert aligned_ncc(gray, half).min() > 0.996
    assert aligned_ncc(gray, zoom).min() > 0.99
    others = np.roll(gray, 1, axis=0)  # pairs of different digits
    assert np.median(aligned_ncc(gray, others)) < 0.95


def test_robust_z_with_a_tail_widens_the_scale_only_for_a_long_tail() -> None:
    from despina.audit.base import robust_z

    rng = np.random.default_rng(0)
    normal = rng.normal(size=5000)
    # On normal data the 90th percentile implies the same scale as the MAD: same z.
    assert np.allclose(robust_z(normal, 0.01, tail=0.9), robust_z(normal, 0.01), rtol=0.1)
    # A long upper tail (a tenth of the data spread far out) widens it: fewer extremes.
    skewed = np.r_[rng.normal(size=4500), rng.exponential(5.0, size=500) + 1]
    assert (robust_z(skewed, 0.01) > 3.5).mean() > 0.05
    assert (robust_z(skewed, 0.01, tail=0.9) > 3.5).mean() < 0.05


def test_outlier_check_flags_a_foreign_cluster_the_model_half_maps_to_a_known_class() -> None:
    """Unknown images that resemble a known class (T-shirts among shirts): the model leans
    to that class without conviction. Its neighbourhood is not theirs, so they are
    outliers; only a class the model recognizes (over half the probability) stands in
    for the given label."""
    rng = np.random.default_rng(2)
    n_in, n_out, k = 400, 20, 8
    y = rng.integers(0, k, n_in + n_out)
    centers = rng.normal(size=(k, 32)) * 3
    emb = centers[y] + rng.normal(scale=0.5, size=(n_in + n_out, 32))
    # Beside class 0, nearer to it than to any other class, not quite among its members.
    emb[n_in:] = centers[0] + rng.normal(size=32) * 0.3 + rng.normal(scale=0.5, size=(n_out, 32))
    predicted = y.copy()
    predicted[n_in:] = 0
    confidence = rng.uniform(0.3, 0.99, n_in + n_out)  # known images: sure and unsure
    confidence[n_in:] = rng.uniform(0.3, 0.5, n_out)  # the unknown ones: leaning to 0
    probs = np.repeat(((1 - confidence) / (k - 1))[:, None], k, axis=1)
    probs[np.arange(n_in + n_out), predicted] = confidence
    images, _ = digits_images(n_in + n_out)
    res = OutlierCheck().run(context_for(list(images), y, probs, emb))
    assert res.flags[n_in:].mean() >= 0.8
    assert res.flags[:n_in].sum() <= 4


def test_a_tenth_of_dark_images_does_not_move_the_dark_bound_onto_ordinary_ones() -> None:
    tiles = photo_tiles()
    rng = np.random.default_rng(0)
    darkened = set(rng.choice(len(tiles), len(tiles) // 10, replace=False).tolist())
    ordinary = [i for i in range(len(tiles)) if i not in darkened]
    labels = np.zeros(len(tiles), dtype=np.int64)

    def dark(images: list[np.ndarray]) -> np.ndarray:
        res = DefectCheck().run(context_for(list(images), labels))
        return np.array(["dark" in d for d in res.details["defects"]])

    before = dark(tiles)
    after = dark([(t * 0.25).astype(np.uint8) if i in darkened else t for i, t in enumerate(tiles)])
    assert after[sorted(darkened)].mean() >= 0.9
    assert after[ordinary].sum() <= before[ordinary].sum()


def test_packed_hashes_differ_in_as_many_bits_as_the_dct_signs_they_pack() -> None:
    rng = np.random.default_rng(0)
    thumbs = rng.random((40, 32, 32), dtype=np.float32)
    thumbs[1] = thumbs[0]  # one identical pair: distance 0
    low = np.stack([cv2.dct(t)[:8, :8].ravel() for t in thumbs])
    signs = low > np.median(low[:, 1:], axis=1, keepdims=True)
    hashes = phash_bits(thumbs)
    assert hashes.shape == (40,) and hashes.dtype == np.uint64
    a, b = np.arange(40), rng.permutation(40)
    expected = (signs[a] != signs[b]).sum(axis=1)
    assert np.array_equal(hash_distance(hashes[a], hashes[b]), expected)
    assert hash_distance(hashes[:1], hashes[1:2])[0] == 0
    assert expected.max() > 20  # random thumbnails differ in many bits: the count is tested

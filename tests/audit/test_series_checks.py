"""Series checks on real signals: the matrix profile is exact, the labelled anomaly of a UCR
series is its strongest discord, and stuck or missing values are found."""

from __future__ import annotations

import numpy as np
import pytest

from despina.audit.base import AuditContext
from despina.audit.checks import AnomalyCheck, SequenceValueCheck
from despina.audit.checks.series import dominant_period, longest_run, matrix_profile
from despina.data.sequences import SequenceSet


def _context(x: np.ndarray, lengths: np.ndarray | None = None) -> AuditContext:
    n = len(x)
    seq = SequenceSet(x.astype(np.float32), [str(i) for i in range(n)], None,
                      np.full(n, x.shape[2]) if lengths is None else lengths, ["v"], "test",
                      "long", [[] for _ in range(n)])  # fmt: skip
    return AuditContext(
        ids=seq.ids, given_labels=[""] * n, class_names=[], valid=np.ones(n, bool),
        load_defects=[None] * n, sequences=seq,
    )  # fmt: skip


def test_the_matrix_profile_equals_a_brute_force_one() -> None:
    from aeon.datasets import load_kdd_tsad_135

    x = np.asarray(load_kdd_tsad_135()[0][:600], float)
    w = 40
    windows = np.lib.stride_tricks.sliding_window_view(x, w)
    z = (windows - windows.mean(1, keepdims=True)) / windows.std(1, keepdims=True)
    dist = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    i = np.arange(len(z))
    dist[np.abs(i[:, None] - i[None, :]) < w / 4] = np.inf
    np.testing.assert_allclose(matrix_profile(x, w), dist.min(axis=1), rtol=1e-3, atol=1e-3)


def test_the_labelled_anomaly_of_kdd_135_is_the_strongest_discord() -> None:
    from aeon.datasets import load_kdd_tsad_135

    x, y = load_kdd_tsad_135()
    res = AnomalyCheck().run(_context(np.asarray(x, float)[None, None, :]))
    top = res.details["anomalies"][0][0]
    assert np.asarray(y).astype(bool)[top["start"] : top["end"]].any()
    assert res.flags[0] and 100 < dominant_period(np.asarray(x, float)) < 300  # type: ignore[operator]


def test_short_series_are_left_to_the_other_checks() -> None:
    res = AnomalyCheck().run(_context(np.random.default_rng(0).normal(size=(5, 1, 24))))
    assert not res.flags.any() and res.details["anomalies"] == [[]] * 5


@pytest.mark.parametrize(
    ("values", "expect"),
    [([1, 1, 1, 2, 2, 1], 3), ([np.nan, 4, 4], 2), ([], 0), ([5], 1)],
)
def test_longest_run(values: list[float], expect: int) -> None:
    assert longest_run(np.asarray(values, float)) == expect


def test_stuck_missing_and_single_step_series_are_findings() -> None:
    x = np.random.default_rng(1).normal(size=(4, 1, 40))
    x[0, 0, 5:30] = 0.25  # stuck
    x[1, 0, 7] = np.nan
    x[2, 0, 3] = np.inf
    lengths = np.array([40, 40, 40, 1])
    found = SequenceValueCheck().run(_context(x, lengths)).details["findings"]
    assert found[0] == ["flatline:25"]
    assert found[1] == ["missing:1"] and found[2] == ["nonfinite:1"]
    assert found[3] == ["too_short"]

"""Series checks on real signals: the matrix profile is exact, the labelled anomaly of a UCR
series is its strongest discord, spikes and level shifts put into it are found and named
from a forecaster's residuals, and stuck or missing values are found."""

from __future__ import annotations

import numpy as np
import pytest

from despina.audit.base import AuditContext
from despina.audit.checks import AnomalyCheck, SequenceValueCheck
from despina.audit.checks.series import dominant_period, longest_run, matrix_profile, stretches
from despina.data.sequences import SequenceSet
from despina.training.forecast import forecast_residuals


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


@pytest.mark.parametrize(
    ("hit", "expect"),
    [([0, 1, 1, 0, 0, 0, 1], [(1, 3), (6, 7)]), ([1, 0, 1], [(0, 3)]), ([0, 0], [])],
)
def test_stretches_join_runs_close_together(hit: list[int], expect: list[tuple[int, int]]) -> None:
    assert stretches(np.asarray(hit, bool)) == expect


def test_a_spike_and_a_level_shift_in_a_real_signal_are_found_and_named() -> None:
    from aeon.datasets import load_kdd_tsad_135

    x = np.asarray(load_kdd_tsad_135()[0], float)
    lo, hi = np.quantile(x, [0.01, 0.99])
    x[1500] += 0.8 * (hi - lo)
    x[5000:] += 0.5 * (hi - lo)
    ctx = _context(x[None, None, :])
    ctx.residuals = {(0, 0): forecast_residuals([x], 32, seed=0)[0]}
    found = AnomalyCheck().run(ctx).details["anomalies"][0]
    kinds = {(a["kind"], a["start"]) for a in found}
    assert any(k == "spike" and 1498 <= s <= 1500 for k, s in kinds), found
    assert any(k == "level_shift" and 4995 <= s <= 5001 for k, s in kinds), found
    values = SequenceValueCheck().run(ctx).details["findings"][0]
    assert any(v.startswith("spike:") for v in values) and "level_shift:1" in values


def test_without_a_forecaster_the_score_is_the_discords_alone() -> None:
    from aeon.datasets import load_kdd_tsad_135

    x = np.asarray(load_kdd_tsad_135()[0], float)
    res = AnomalyCheck().run(_context(x[None, None, :]))
    assert {a["kind"] for a in res.details["anomalies"][0]} == {"discord"}

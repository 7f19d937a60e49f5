"""The demo end to end: injected problems on real digits are found with margin."""

from __future__ import annotations

from pathlib import Path

import pytest

from despina.jobs.demo import run_demo


@pytest.mark.slow
def test_demo_finds_what_was_injected(tmp_path: Path) -> None:
    report, scores = run_demo(tmp_path, seed=0, workers=2)
    by = {s.problem: s for s in scores}
    # Floors well below what the demo measures (see README), so noise cannot flip them.
    assert by["label flip"].recall >= 0.75 and by["label flip"].precision >= 0.75
    assert by["darkened"].recall >= 0.9 and by["darkened"].precision >= 0.9
    assert by["blurred"].recall >= 0.6
    assert by["corrupt file"].recall == 1.0 and by["corrupt file"].precision == 1.0
    assert by["near-duplicate"].recall >= 0.7 and by["near-duplicate"].precision >= 0.6
    assert (tmp_path / "audit" / "report.html").is_file()
    assert report.counts["samples"] == 1797 + 10 + 5


def test_scores_count_pairs_and_flags_against_ground_truth() -> None:
    import pandas as pd

    from despina.data.inject import GroundTruth
    from despina.jobs.demo import score_against

    df = pd.DataFrame(
        {
            "id": ["a", "b", "c", "copy_c", "d", "e", "f"],
            "is_label_issue": [True, True, False, False, False, False, False],
            "defects": ["blurry", "", "", "", "dark;blurry", "corrupt", ""],
            "duplicate_group": pd.array([None, None, 0, 0, 1, None, 1], dtype="Int64"),
            "is_duplicate": [False, False, False, True, False, False, True],
        }
    )
    gt = GroundTruth(
        label_flips={"a": "1", "f": "2"},
        blurred=["a"],
        darkened=["d"],
        near_duplicates=[("c", "copy_c")],
        corrupt=["e"],
    )
    by = {s.problem: s for s in score_against(df, gt)}
    assert (by["label flip"].true_positives, by["label flip"].flagged) == (1, 2)
    assert by["label flip"].recall == 0.5 and by["label flip"].precision == 0.5
    assert by["blurred"].flagged == 2 and by["blurred"].true_positives == 1
    assert by["darkened"].precision == 1.0 and by["corrupt file"].recall == 1.0
    dup = by["near-duplicate"]
    assert (dup.injected, dup.flagged, dup.true_positives) == (1, 2, 1)

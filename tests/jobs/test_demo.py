"""The demo end to end: injected problems on real digits are found with margin."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from despina.audit.report import AuditReport
from despina.jobs.demo import Score, run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AuditReport, list[Score]]:
    out = tmp_path_factory.mktemp("demo")
    report, scores = run_demo(out, seed=0, workers=2)
    return out, report, scores


@pytest.mark.slow
def test_demo_finds_what_was_injected(demo: tuple[Path, AuditReport, list[Score]]) -> None:
    _, report, scores = demo
    by = {s.problem: s for s in scores}
    # Floors well below what the demo measures (see README), so noise cannot flip them.
    assert by["label flip"].recall >= 0.75 and by["label flip"].precision >= 0.75
    assert by["darkened"].recall >= 0.9 and by["darkened"].precision >= 0.9
    assert by["blurred"].recall >= 0.6
    assert by["corrupt file"].recall == 1.0 and by["corrupt file"].precision == 1.0
    assert by["near-duplicate"].recall >= 0.7 and by["near-duplicate"].precision >= 0.6
    assert report.counts["samples"] == 1797 + 10 + 5


def _galleries(page: str) -> dict[str, tuple[int, int, list[float]]]:
    """Each gallery of the report: (total it says, cards shown, the cards' scores)."""
    found = {}
    parts = re.split(r'<h2 class="gallery" ', page)[1:]
    for part in parts:
        total, shown, title = re.match(
            r'data-total="(\d+)" data-shown="(\d+)">([^<]+)<', part
        ).groups()
        scores = [
            float(x) for x in re.findall(r'<figure data-score="([^"]+)"', part.split("<h2")[0])
        ]
        assert f"showing {shown} of {total}" in part or total == "0"
        found[title] = (int(total), int(shown), scores)
    return found


@pytest.mark.slow
def test_the_demo_report_shows_what_summary_json_counts(
    demo: tuple[Path, AuditReport, list[Score]],
) -> None:
    out, report, _ = demo
    audit = out / "audit"
    page = (audit / "report.html").read_text()
    counts = json.loads((audit / "summary.json").read_text())["counts"]
    cards = dict(
        (label, int(n)) for n, label in re.findall(r'<div class="card"><b>(\d+)</b>([^<(]+)', page)
    )
    assert cards["label issues"] == counts["label_issues"]
    assert cards["outliers"] == counts["outliers"]
    assert cards["duplicates "] == counts["duplicates"]
    assert cards["defective images"] == counts["defective"]
    galleries = _galleries(page)
    assert galleries["Label issues"][0] == counts["label_issues"] > 0
    assert galleries["Outliers"][0] == counts["outliers"] > 0
    assert galleries["Duplicate sets"][0] == counts["duplicate_groups"] > 0
    kinds = {k[len("defect_") :]: v for k, v in counts.items() if k.startswith("defect_")}
    assert {"dark", "blurry", "corrupt"} <= set(kinds)
    for kind, n in kinds.items():  # every kind found has its own gallery, with images in it
        total, shown, _ = galleries[f"Defective images: {kind.replace('_', ' ')}"]
        assert total == n and 0 < shown <= n
    for title, (total, shown, scores) in galleries.items():
        assert shown <= total, title
        assert scores == sorted(scores), f"{title} is not ordered by its score: {scores}"
    # Scores that rank the cards, never a row of "0.000": the worst label issues differ.
    assert len(set(galleries["Label issues"][2])) > 1
    # The outlier gallery shows the outliers, not the darkened images already shown as dark.
    outliers = report.samples[report.samples["is_outlier"]]
    plain = outliers[outliers["defects"] == ""]
    assert galleries["Outliers"][1] == min(12, len(plain)) > 0
    # The full lists beside the report hold every flagged row, worst first.
    for name, key, score in [("label_issues", "is_label_issue", "label_quality"),
                             ("outliers", "is_outlier", "outlier_score")]:  # fmt: skip
        listed = pd.read_csv(audit / "issues" / f"{name}.csv")
        assert len(listed) == int(report.samples[key].sum())
        assert listed[score].is_monotonic_increasing
    assert "cleaned.csv" in page and "Relabel each to the suggested label" in page


@pytest.mark.slow
def test_samples_csv_labels_are_integers_or_strings(
    demo: tuple[Path, AuditReport, list[Score]],
) -> None:
    out, report, _ = demo
    for column in ("given_label", "predicted_label", "suggested_label"):
        assert str(report.samples[column].dtype) == "Int64", column
    assert report.samples["suggested_label"].isna().sum() > 0  # missing is <NA>, not ""
    text = (out / "audit" / "samples.csv").read_text().splitlines()
    header = text[0].split(",")
    cols = [header.index(c) for c in ("given_label", "predicted_label", "suggested_label")]
    for line in text[1:]:
        cells = line.split(",")
        assert all(cells[i] == "" or cells[i].isdigit() for i in cols), line


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

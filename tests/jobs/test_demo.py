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

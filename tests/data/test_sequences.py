"""Reading series: long and wide layouts, gaps and irregular steps recorded, not filled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from despina.core.errors import DataError
from despina.data.sequences import read_sequences


def test_long_layout_records_gaps_irregular_steps_and_changing_labels(tmp_path: Path) -> None:
    rows = ["series_id,t,value,label"]
    rows += [f"a,{t},{t * 0.5},up" for t in range(10)]
    rows += [f"b,{t},{-t},down" for t in (0, 1, 2, 6, 7, 8, 9)]  # steps 3-5 missing
    rows += [f"c,{t},{t},up" for t in (0, 1.0, 2.4, 3.0, 4.1)]  # irregular
    rows += [f"d,{t},1,{'up' if t < 5 else 'down'}" for t in range(8)]
    csv = tmp_path / "s.csv"
    csv.write_text("\n".join(rows[:1] + rows[1:][::-1]) + "\n")  # any row order
    seq = read_sequences(csv, target="label")
    assert seq.layout == "long" and seq.ids == ["a", "b", "c", "d"]
    assert seq.x.shape == (4, 1, 10)
    np.testing.assert_allclose(seq.x[0, 0], np.arange(10) * 0.5)  # ordered by t
    assert list(seq.lengths) == [10, 7, 5, 8]
    assert np.isnan(seq.x[1, 0, 7:]).all()  # padded at the end, not interpolated
    assert seq.findings[1] == ["gap:3"]
    assert seq.findings[2] == ["irregular"]
    assert "label_changes" in seq.findings[3] and seq.labels == ["up", "down", "up", "up"]


def test_wide_layout_and_cells_that_are_not_numbers(tmp_path: Path) -> None:
    csv = tmp_path / "w.csv"
    csv.write_text("label,t0,t1,t2\nx,1,2,3\ny,4,oops,6\nx,7,8,\n")
    seq = read_sequences(csv, target="label")
    assert seq.layout == "wide" and seq.x.shape == (3, 1, 3)
    assert seq.findings[1] == ["not_a_number:1"] and list(seq.lengths) == [3, 3, 2]


def test_a_time_that_is_not_a_time_is_refused(tmp_path: Path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("series_id,t,value\na,0,1\na,soon,2\n")
    with pytest.raises(DataError, match="neither a number nor a date"):
        read_sequences(csv)

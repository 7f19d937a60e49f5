"""Table checks on real tables with injected problems: each kind found, clean rows left alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_wine

from despina.audit.checks import RowDuplicateCheck, TableOutlierCheck, ValueCheck
from despina.data.table_inject import CELL_KINDS, COPY_KINDS, inject_table_problems
from tests.audit.helpers import table_context


def _with_category(frame: pd.DataFrame) -> pd.DataFrame:
    """A categorical column derived from a numeric one, so unseen categories can be injected."""
    col = frame.columns[0]
    bins = pd.qcut(frame[col], 4, labels=["low", "mid", "high", "top"]).astype(str)
    return frame.assign(grade=bins)


@pytest.mark.parametrize("loader", [load_wine, load_breast_cancer], ids=["wine", "cancer"])
def test_every_injected_kind_is_found_and_clean_rows_are_not(loader) -> None:  # type: ignore[no-untyped-def]
    base = _with_category(loader(as_frame=True).frame)
    inj = inject_table_problems(base, "target", rate=0.03, seed=0)
    ctx = table_context(inj.frame, "target")
    values, dups = ValueCheck().run(ctx), RowDuplicateCheck().run(ctx)
    found = np.array([bool(f) for f in values.details["findings"]])
    for kind in CELL_KINDS:
        assert found[inj.cells[kind]].all(), kind
    group, kinds = dups.details["group_of"], dups.details["kind"]
    for kind in COPY_KINDS:
        for a, b in inj.copies[kind]:
            assert group[a] == group[b] >= 0 and kinds[b] == kind, (kind, a, b)
            assert dups.flags[a] != dups.flags[b]  # one of the pair kept
    untouched = np.setdiff1d(np.arange(ctx.n), sorted(inj.touched))
    assert (found | dups.flags)[untouched].mean() <= 0.01


def test_findings_name_the_column_and_constant_columns_are_reported() -> None:
    frame = pd.DataFrame(
        {
            "x": [str(v) for v in range(200)],
            "same": ["k"] * 200,
            "c": ["a", "b"] * 99 + ["a", "typo"],
        }
    )
    frame.loc[3, "x"] = "inf"
    frame.loc[4, "x"] = "-99999"
    res = ValueCheck().run(table_context(frame, None))
    findings = res.details["findings"]
    assert findings[3] == ["type:x"] and findings[4] == ["range:x"]
    assert findings[199] == ["rare_category:c"]
    assert res.details["constant_columns"] == ["same"]
    assert res.flags.sum() == 3


def test_a_planted_far_row_is_the_top_outlier() -> None:
    frame = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    far = frame.iloc[[0]] * 25
    frame = pd.concat([frame, far], ignore_index=True)
    res = TableOutlierCheck().run(table_context(frame, None))
    assert int(np.argmax(res.details["z"])) == len(frame) - 1
    assert res.flags[-1] and res.flags.mean() < 0.1

"""The table pipeline: imputes, scales, maps categories; saved and loaded unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from despina.core.errors import ModelError
from despina.data.tables import infer_schema
from despina.preprocessing.table import CLIP, TablePipeline


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "size": [1.0, 2.0, 3.0, None, 5.0, 1e9],
            "colour": ["red", "blue", "red", None, "green", "red"],
        }
    )


def test_transform_imputes_scales_and_codes_categories(tmp_path: Path) -> None:
    frame = _frame()
    pipe = TablePipeline(infer_schema(frame, None)).fit(frame)
    x = pipe.transform(frame)
    assert x.shape == (6, pipe.layout.width) == (6, 3)  # size, size missing?, colour
    assert x[3, 0] == 0.0 and x[3, 1] == 1.0  # median imputed, indicator set
    assert x[5, 0] == CLIP  # one wild value cannot dominate training
    assert pipe.transform(frame, clip=False)[5, 0] > CLIP
    new = pd.DataFrame({"size": [2.0], "colour": ["purple"]})
    assert pipe.transform(new)[0, 2] == 0.0  # unseen category: code 0
    assert sorted(set(x[:, 2])) == [0.0, 1.0, 2.0, 3.0]
    pipe.save(tmp_path / "p.json")
    again = TablePipeline.load(tmp_path / "p.json")
    np.testing.assert_array_equal(again.transform(frame), x)


def test_an_unfitted_or_broken_pipeline_says_so(tmp_path: Path) -> None:
    frame = _frame()
    with pytest.raises(ModelError, match="not fitted"):
        TablePipeline(infer_schema(frame, None)).transform(frame)
    (tmp_path / "p.json").write_text('{"kind": "table"}')
    with pytest.raises(ModelError, match="malformed"):
        TablePipeline.load(tmp_path / "p.json")

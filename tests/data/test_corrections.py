"""A corrections manifest: read with clear errors, applied to a dataset (relabel, drop)
and to findings (keep, outlier), and by the train job."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from despina.core.config import ModelConfig, TrainConfig
from despina.core.errors import DataError, NotFoundError
from despina.data.corrections import apply_to_dataset, apply_to_findings, read_corrections
from despina.data.sources import load_source
from despina.jobs.batch import TrainJobConfig, train_model
from tests.conftest import write_digits


def _manifest(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    pd.DataFrame(rows, columns=["id", "action", "label"]).assign(user="u", at="t").to_csv(
        path, index=False
    )
    return path


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([("a", "rename", "")], "unknown actions"),
        ([("a", "relabel", "")], "give no label"),
    ],
)
def test_a_bad_manifest_is_refused_saying_what_is_wrong(
    tmp_path: Path, rows: list[tuple[str, str, str]], match: str
) -> None:
    with pytest.raises(DataError, match=match):
        read_corrections(_manifest(tmp_path / "c.csv", rows))


def test_a_missing_or_columnless_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="review export"):
        read_corrections(tmp_path / "none.csv")
    (tmp_path / "x.csv").write_text("sample,verdict\na,keep\n")
    with pytest.raises(DataError, match="lacks the columns"):
        read_corrections(tmp_path / "x.csv")


def test_relabel_and_drop_change_the_dataset_and_keep_and_outlier_the_findings(
    tmp_path: Path,
) -> None:
    write_digits(tmp_path / "d", per_class=3)
    dataset = load_source(tmp_path / "d")
    a, b, c, d = (r.id for r in dataset.records[:4])
    rows = [(a, "relabel", "5"), (b, "drop", ""), (c, "keep", ""), (d, "outlier", "")]
    fixes = read_corrections(_manifest(tmp_path / "c.csv", rows))
    fixed = apply_to_dataset(dataset, fixes)
    by_id = {r.id: r for r in fixed.records}
    assert by_id[a].label == "5" and b not in by_id and len(fixed) == len(dataset) - 1
    samples = pd.DataFrame({"id": [a, c, d], "is_label_issue": True, "is_outlier": False,
                            "suggested_label": "3"})  # fmt: skip
    apply_to_findings(samples, fixes)
    assert samples["is_label_issue"].tolist() == [True, False, True]
    assert samples["is_outlier"].tolist() == [False, False, True]
    with pytest.raises(DataError, match="does not have"):
        apply_to_dataset(dataset, {"elsewhere.png": ("keep", "")})
    with pytest.raises(DataError, match="not classes"):
        apply_to_dataset(dataset, {a: ("relabel", "cat")})


def test_the_train_job_trains_on_the_corrected_labels(tmp_path: Path) -> None:
    write_digits(tmp_path / "d", per_class=5)
    ids = [r.id for r in load_source(tmp_path / "d").records]
    manifest = _manifest(tmp_path / "c.csv", [(ids[0], "drop", ""), (ids[1], "outlier", ""),
                                              (ids[2], "relabel", "9")])  # fmt: skip
    cfg = TrainJobConfig(image_size=8, model=ModelConfig(width=8), train=TrainConfig(epochs=1),
                         corrections=str(manifest))  # fmt: skip
    train_model(str(tmp_path / "d"), tmp_path / "out", cfg)
    meta = json.loads((tmp_path / "out" / "model" / "model.json").read_text())
    assert meta["trained_on"] == len(ids) - 2

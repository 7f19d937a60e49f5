"""Reading tables: raw cells kept, schema inferred and overridable, bad files refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from despina.core.errors import ConfigError, DataError, NotFoundError
from despina.data.table_inject import inject_table_problems
from despina.data.tables import is_table_source, read_table


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_cells_stay_as_written_and_kinds_are_inferred(tmp_path: Path) -> None:
    csv = _write(
        tmp_path / "t.csv",
        "age,city,score,label\n31,Oslo,1.5,a\nforty,Rome,,b\n28,  Oslo ,2.5,a\n"
        + "".join(f"{20 + i},Rome,{i}.0,b\n" for i in range(20)),
    )
    t = read_table(csv, target="label")
    kinds = {c.name: (c.kind, c.nullable) for c in t.schema.columns}
    # One word among 22 numbers: still numeric, and the word survives for the value check.
    assert kinds == {
        "age": ("numeric", False),
        "city": ("categorical", False),
        "score": ("numeric", True),
    }
    assert t.frame.loc[1, "age"] == "forty" and t.frame.loc[2, "city"] == "Oslo"
    assert t.labels is not None and t.labels[:3] == ["a", "b", "a"]


def test_a_yaml_file_overrides_the_inferred_kinds(tmp_path: Path) -> None:
    csv = _write(
        tmp_path / "t.csv", "zip,n\n" + "".join(f"{1000 + i % 3},{i}\n" for i in range(30))
    )
    schema = _write(tmp_path / "s.yaml", "columns:\n  zip: categorical\n")
    assert read_table(csv, schema_file=schema).schema.column("zip").kind == "categorical"
    bad = _write(tmp_path / "b.yaml", "columns:\n  zip: text\n")
    with pytest.raises(ConfigError, match="numeric or categorical"):
        read_table(csv, schema_file=bad)
    unknown = _write(tmp_path / "u.yaml", "columns:\n  postcode: categorical\n")
    with pytest.raises(ConfigError, match="postcode"):
        read_table(csv, schema_file=unknown)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is empty"),
        ("a,b\n", "has no rows"),
        ("a,b\n1,2\n3,4,5\n", r"line 3"),
    ],
    ids=["empty", "header only", "ragged row"],
)
def test_bad_files_are_refused_with_what_to_do(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        read_table(_write(tmp_path / "t.csv", text))


def test_a_missing_target_names_the_columns_there_are(tmp_path: Path) -> None:
    csv = _write(tmp_path / "t.csv", "a,b\n1,2\n")
    with pytest.raises(DataError, match="its columns are: a, b"):
        read_table(csv, target="label")
    with pytest.raises(NotFoundError):
        read_table(tmp_path / "nope.csv")


def test_parquet_and_the_table_or_manifest_decision(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0], "c": ["u", "v", None], "y": ["p", "q", "p"]})
    frame.to_parquet(tmp_path / "t.parquet")
    t = read_table(tmp_path / "t.parquet", target="y")
    assert t.schema.column("x").nullable and t.schema.column("c").kind == "categorical"
    assert is_table_source(tmp_path / "t.parquet")
    _write(tmp_path / "manifest.csv", "path,label\na.png,cat\n")
    assert not is_table_source(tmp_path / "manifest.csv")


def test_injection_records_exactly_what_it_changed() -> None:
    from sklearn.datasets import load_wine

    base = load_wine(as_frame=True).frame
    inj = inject_table_problems(base, "target", rate=0.05, seed=1)
    assert len(inj.frame) == len(base) + 3 * round(0.05 * len(base))
    for a, b in inj.copies["exact"]:
        assert inj.frame.loc[a].astype(float).equals(inj.frame.loc[b].astype(float))
    for a, b in inj.copies["conflicting"]:
        assert inj.frame.loc[a, "target"] != inj.frame.loc[b, "target"]
    assert all(inj.frame.loc[r].isna().sum() == 1 for r in inj.cells["missing"])
    assert "unseen" not in inj.cells  # wine has no categorical column

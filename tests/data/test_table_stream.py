"""Large tables are streamed: a uniform sample in file order, whole-file counts, and the
same errors as a table read whole; a streamed table audits through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine

from despina.core.errors import DataError
from despina.data import table_stream
from despina.data.sequences import read_sequences
from despina.data.table_stream import sample_rows
from despina.data.tables import read_table


def _wine(tmp_path: Path, copies: int = 4, suffix: str = ".csv") -> tuple[Path, pd.DataFrame]:
    data = load_wine(as_frame=True)
    frame = data.frame.rename(columns={"target": "label"})
    big = pd.concat([frame] * copies, ignore_index=True)
    path = tmp_path / f"wine{suffix}"
    big.to_csv(path, index=False) if suffix == ".csv" else big.to_parquet(path, index=False)
    return path, big


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_sample_is_uniform_in_file_order_and_counts_every_row(
    tmp_path: Path, suffix: str
) -> None:
    path, big = _wine(tmp_path, suffix=suffix)
    frame, got = sample_rows(path, rows=100, seed=1, chunk_rows=50)
    assert got.rows_in_file == len(big) == 712
    assert got.duplicate_rows == 712 - 178  # three copies of every row repeat the first
    assert len(frame) == 100 and np.all(np.diff(got.rows) > 0)
    assert got.rows.max() > 534 and got.rows.min() < 178  # drawn from every part of the file
    expect = big.iloc[got.rows].astype(str).reset_index(drop=True)
    np.testing.assert_array_equal(frame["alcohol"].astype(float), expect["alcohol"].astype(float))
    _, again = sample_rows(path, rows=100, seed=1, chunk_rows=50)
    np.testing.assert_array_equal(got.rows, again.rows)


def test_a_ragged_row_anywhere_in_a_streamed_file_is_refused(tmp_path: Path) -> None:
    path, _ = _wine(tmp_path)
    with path.open("a") as fh:
        fh.write("1,2,3\n" + ",".join(["1"] * 20) + "\n")
    with pytest.raises(DataError, match="not a well-formed CSV"):
        sample_rows(path, rows=50, chunk_rows=100)


def _small_limits(monkeypatch: pytest.MonkeyPatch, sample: int) -> None:
    """Stream any file over 1,000 bytes, keeping ``sample`` rows (the real limits need a
    file of hundreds of MB: benchmarks/table_stream.py)."""
    monkeypatch.setattr(table_stream, "STREAM_BYTES", 1000)
    monkeypatch.setattr(table_stream, "SAMPLE_ROWS", sample)


def test_a_large_table_is_read_as_a_sample_and_series_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = _wine(tmp_path)
    _small_limits(monkeypatch, 300)
    table = read_table(path, "label")
    assert len(table.frame) == 300 and table.streamed is not None
    assert table.streamed.rows_in_file == 712 and len(table.row_ids) == 300
    with pytest.raises(DataError, match="split it"):
        read_sequences(path)


def test_a_streamed_table_audits_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from despina.cli.app import app

    path, _ = _wine(tmp_path)
    _small_limits(monkeypatch, 250)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["audit", str(path), "--target", "label", "--checks", "values,duplicate",
              "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 250
    assert summary["streamed"] == {"rows_in_file": 712, "duplicate_rows_in_file": 534,
                                   "sampled_rows": 250}  # fmt: skip
    samples = pd.read_csv(out / "samples.csv")
    assert samples["id"].max() < 712 and samples["id"].is_monotonic_increasing
    assert "sample of 250" in result.output

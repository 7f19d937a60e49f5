from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from despina.core.errors import DataError, NotFoundError, PathEscapeError
from despina.data.sources import load_source, read_idx
from tests.conftest import SHARED_FASHION


def test_folder_gives_one_record_per_file_with_relative_ids(digits_folder: Path) -> None:
    ds = load_source(digits_folder)
    assert len(ds) == 200
    assert ds.class_names == [str(i) for i in range(10)]
    assert all(r.id == Path(r.path).relative_to(digits_folder).as_posix() for r in ds.records)


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images found"):
        load_source(tmp_path)


def test_folder_without_class_subfolders_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match="subfolder"):
        load_source(tmp_path)


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_source(tmp_path / "nothing")


def test_symlink_escaping_the_folder_is_skipped(digits_folder: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"x")
    os.symlink(secret, digits_folder / "0" / "link.png")
    ds = load_source(digits_folder)
    assert "0/link.png" not in {r.id for r in ds.records}


def test_linked_folders_leading_outside_are_skipped(digits_folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"x")
    os.symlink(outside, digits_folder / "0" / "nested")  # a linked folder inside a class
    os.symlink(outside, digits_folder / "linked_class")  # a linked class folder
    ids = {r.id for r in load_source(digits_folder).records}
    assert not any("secret" in i for i in ids)
    assert any(i.startswith("0/") for i in ids)  # the real files are still there


def _manifest(folder: Path, rows: list[dict[str, str]], name: str = "m.csv") -> Path:
    path = folder / name
    df = pd.DataFrame(rows)
    if name.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path)
    return path


@pytest.mark.parametrize("name", ["m.csv", "m.parquet"])
def test_manifest_csv_and_parquet(digits_folder: Path, name: str) -> None:
    rows = [{"path": f"0/{p.name}", "label": "zero"} for p in (digits_folder / "0").iterdir()]
    ds = load_source(_manifest(digits_folder, rows, name))
    assert len(ds) == 20 and set(ds.labels) == {"zero"}


def test_manifest_escaping_its_folder_is_refused(digits_folder: Path) -> None:
    m = _manifest(
        digits_folder / "0",
        [{"path": "../1/" + next((digits_folder / "1").iterdir()).name, "label": "a"}],
    )
    with pytest.raises(PathEscapeError, match="outside"):
        load_source(m)


def test_manifest_absolute_path_outside_is_refused(digits_folder: Path) -> None:
    m = _manifest(digits_folder, [{"path": "/etc/passwd", "label": "a"}])
    with pytest.raises(PathEscapeError):
        load_source(m)


def test_manifest_unknown_and_missing_columns(digits_folder: Path) -> None:
    with pytest.raises(DataError, match="unknown column"):
        load_source(_manifest(digits_folder, [{"path": "0/x.png", "label": "a", "extra": "1"}]))
    with pytest.raises(DataError, match="lacks column"):
        load_source(_manifest(digits_folder, [{"path": "0/x.png"}]))


def test_manifest_missing_files_are_recorded_not_fatal(digits_folder: Path) -> None:
    first = next((digits_folder / "0").iterdir()).name
    ds = load_source(
        _manifest(
            digits_folder,
            [{"path": f"0/{first}", "label": "a"}, {"path": "0/gone.png", "label": "b"}],
        )
    )
    assert [r.missing for r in ds.records] == [False, True]


def test_builtin_digits() -> None:
    ds = load_source("builtin:digits")
    assert len(ds) == 1797 and ds.records[0].array is not None
    with pytest.raises(NotFoundError):
        load_source("builtin:cifar")


@pytest.mark.skipif(not SHARED_FASHION.is_dir(), reason="shared/data/fashion-mnist not present")
def test_fashion_mnist_test_split() -> None:
    ds = load_source(f"fashion-mnist:{SHARED_FASHION}?split=test&limit=50")
    assert len(ds) == 50
    labels = read_idx(SHARED_FASHION / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,)
    both = load_source(f"fashion-mnist:{SHARED_FASHION}?split=all")
    assert len(both) == 70_000 and len({r.id for r in both.records}) == 70_000
    assert both.records[60_000].id == "test/00000"
    assert both.records[60_000].label == ds.records[0].label
    with pytest.raises(DataError, match="train, test or all"):
        load_source(f"fashion-mnist:{SHARED_FASHION}?split=validation")


def test_idx_reader_refuses_garbage(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError):
        read_idx(tmp_path / "bad")

"""Partitions cover the source exactly once, and sources stay inside the allowed roots."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from despina.control.partitions import check_source, load_batch, plan, records_for
from despina.core.errors import DataError, NotFoundError, PathEscapeError
from tests.control.fixtures import write_files


def test_folder_partitions_cover_every_file_once(tmp_path: Path) -> None:
    write_files(tmp_path / "a", 7)
    write_files(tmp_path / "b", 3)
    parts = plan(str(tmp_path), 4)
    files = [p for part in parts for p in part["paths"]]
    assert len(parts) == 4 and len(files) == 10 == len(set(files))
    assert sum(p["total"] for p in parts) == 10
    recs = records_for(str(tmp_path), parts[0])
    assert recs[0].id == "a/item-0000.txt" and recs[0].label == "a"
    assert load_batch(str(tmp_path), parts[-1]) == parts[-1]["paths"]


def test_more_partitions_than_items_gives_one_item_each(tmp_path: Path) -> None:
    write_files(tmp_path, 2)
    assert [p["total"] for p in plan(str(tmp_path), 8)] == [1, 1]


def test_row_ranges_of_tables_and_builtin_images(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": list(range(10))}), tmp_path / "t.parquet")
    parts = plan(str(tmp_path / "t.parquet"), 3)
    assert [(p["start"], p["stop"]) for p in parts] == [(0, 3), (3, 7), (7, 10)]
    assert load_batch(str(tmp_path / "t.parquet"), parts[1])["x"].tolist() == [3, 4, 5, 6]
    digits = plan("builtin:digits", 2)
    assert sum(p["total"] for p in digits) == 1797
    batch = load_batch("builtin:digits", digits[1])
    assert list(batch.columns) == ["id", "label", "image"] and len(batch) == digits[1]["total"]


def test_sources_are_checked(tmp_path: Path) -> None:
    inside = write_files(tmp_path / "in", 1)
    check_source(str(inside), (tmp_path,))
    with pytest.raises(PathEscapeError, match="DESPINA_ALLOWED_ROOTS"):
        check_source(str(inside), (tmp_path / "other",))
    with pytest.raises(PathEscapeError):
        check_source(str(tmp_path / ".." / "x"), (tmp_path,))
    with pytest.raises(NotFoundError):
        check_source(str(tmp_path / "missing"), (tmp_path,))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        plan(str(tmp_path / "empty"), 2)


#: (URI, refused?): every fsspec spelling that reads this machine's files is confined to
#: the allowed roots; schemes not on the list are refused; remote s3:// is allowed.
URIS = [
    ("{inside}", False),
    ("file://{inside}", False),
    ("local://{inside}", False),
    ("simplecache::file://{inside}", False),
    ("s3://bucket/prefix", False),
    ("simplecache::s3://bucket/prefix", False),
    ("{outside}", True),
    ("file://{outside}", True),
    ("local://{outside}", True),
    ("local:///etc", True),
    ("simplecache::file:///etc", True),
    ("filecache::local:///etc", True),
    ("dir::file:///etc", True),
    ("dir::file://{inside}", True),
    ("zip::file://{inside}/a.zip", True),
    ("reference::file://{inside}", True),
    ("memory://x", True),
    ("http://127.0.0.1:9/x", True),
    ("gs://bucket/prefix", True),
    ("{inside}/../../etc", True),
    ("file://{inside}/\x00/x", True),
]


@pytest.mark.parametrize(("uri", "refused"), URIS)
def test_every_spelling_of_a_local_path_is_confined(
    tmp_path: Path, uri: str, refused: bool
) -> None:
    inside = write_files(tmp_path / "root" / "in", 1)
    outside = write_files(tmp_path / "outside", 1)
    source = uri.format(inside=inside, outside=outside)
    if refused:
        with pytest.raises(PathEscapeError):
            check_source(source, (tmp_path / "root",))
    else:
        check_source(source, (tmp_path / "root",))


def test_an_operator_can_allow_another_scheme(tmp_path: Path) -> None:
    with pytest.raises(PathEscapeError, match="DESPINA_SOURCE_SCHEMES"):
        check_source("gs://bucket/prefix", (tmp_path,))
    check_source("gs://bucket/prefix", (tmp_path,), remote_schemes=("s3", "gs"))


def test_symlinks_cannot_bring_outside_files_into_a_task(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = write_files(root / "data", 3)
    outside = write_files(tmp_path / "outside", 2)
    (data / "leak.txt").symlink_to(outside / "item-0000.txt")  # a file link out
    (data / "leakdir").symlink_to(outside)  # a folder link out
    (data / "alias.txt").symlink_to(data / "item-0001.txt")  # a link that stays inside
    (root / "escape").symlink_to(outside)  # a source that is a link out
    with pytest.raises(PathEscapeError, match="outside the allowed roots"):
        check_source(str(root / "escape"), (root,))
    check_source(str(data), (root,))
    [part] = plan(str(data), 1)
    names = sorted(Path(p).name for p in part["paths"])
    assert names == ["alias.txt", "item-0000.txt", "item-0001.txt", "item-0002.txt"]

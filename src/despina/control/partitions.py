"""Split a task group's data source into partitions, and read one partition back.

A partition is stored on its task as plain JSON, so a re-run reads exactly the same items:

- ``{"kind": "files", "paths": [...], "root": DIR}``: a slice of a folder's sorted files;
- ``{"kind": "rows", "start": a, "stop": b}``: a row range of a table file or of a
  built-in image set (``fashion-mnist:DIR``, ``builtin:digits``).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from despina.control.settings import DEFAULT_REMOTE_SCHEMES
from despina.core.errors import DataError, NotFoundError, PathEscapeError
from despina.data.images import ImageRecord
from despina.data.sources import FASHION_MNIST_CLASSES, digits_arrays, fashion_mnist_arrays

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = {".csv", ".parquet", ".pq"}


#: fsspec protocols that read this machine's files: confined to the allowed roots.
LOCAL_PROTOCOLS = ("file", "local")
#: fsspec wrappers that only cache what the protocol after them reads; every other
#: wrapper (dir::, zip::, reference::, ...) could read outside what the check sees.
CACHE_WRAPPERS = ("simplecache", "filecache", "blockcache")


def _protocol(part: str) -> str:
    return part.split("://", 1)[0].lower() if "://" in part else "file"


def is_remote(source: str) -> bool:
    return _protocol(source.rsplit("::", 1)[-1]) not in LOCAL_PROTOCOLS


def local_path(source: str) -> Path:
    """The local path a ``path``, ``file://``, ``local://`` or cached local URI reads."""
    target = source.rsplit("::", 1)[-1]
    if "://" in target:
        target = target.split("://", 1)[1]
    return Path(target).expanduser()


def check_scheme(source: str, remote_schemes: tuple[str, ...], what: str) -> None:
    """Refuse a URI whose scheme is not allowed, or that chains through a wrapper that
    could read anything other than what it names."""
    *wrappers, target = source.split("::")
    bad = [w for w in wrappers if w.split("://", 1)[0].lower() not in CACHE_WRAPPERS]
    if bad or _protocol(target) not in (*LOCAL_PROTOCOLS, *remote_schemes):
        schemes = ", ".join(f"{s}://" for s in remote_schemes)
        raise PathEscapeError(
            f"{what} {source!r}: only local paths, file://, {schemes} and the cache "
            f"wrappers {', '.join(f'{w}::' for w in CACHE_WRAPPERS)} are allowed (an "
            "operator can allow more schemes with DESPINA_SOURCE_SCHEMES)"
        )


def check_source(
    source: str,
    allowed_roots: tuple[Path, ...],
    what: str = "data source",
    remote_schemes: tuple[str, ...] = DEFAULT_REMOTE_SCHEMES,
) -> None:
    """Refuse a source whose scheme is not allowed, a local one (whatever protocol reads
    it) outside the allowed roots after following symlinks, or one that does not exist."""
    if "\x00" in source:
        raise PathEscapeError(f"{what} {source!r} holds a NUL byte")
    if source.startswith("builtin:"):
        return
    if source.startswith("fashion-mnist:"):
        path = Path(source.removeprefix("fashion-mnist:").partition("?")[0]).expanduser()
    else:
        check_scheme(source, remote_schemes, what)
        if is_remote(source):
            return
        path = local_path(source)
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in allowed_roots):
        roots = ", ".join(str(r) for r in allowed_roots)
        raise PathEscapeError(
            f"{what} {resolved} is outside the allowed roots ({roots}); move it there or "
            "add its folder to DESPINA_ALLOWED_ROOTS"
        )
    if not resolved.exists():
        raise NotFoundError(f"{what} {resolved} does not exist")


def _fashion(source: str) -> tuple[Path, str]:
    folder, _, query = source.removeprefix("fashion-mnist:").partition("?")
    split = {k: v[-1] for k, v in parse_qs(query).items()}.get("split", "train")
    return Path(folder).expanduser(), split


@functools.lru_cache(maxsize=2)
def _image_arrays(source: str) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Pixels, label indices, class names and id prefix of a built-in image source.

    Cached: a worker runs many partitions of one source, and planning needs the count.
    """
    if source == "builtin:digits":
        images, labels = digits_arrays()
        return images, labels, [str(i) for i in range(10)], "digits"
    if source.startswith("fashion-mnist:"):
        folder, split = _fashion(source)
        if split == "all":
            a, la = fashion_mnist_arrays(folder, "train")
            b, lb = fashion_mnist_arrays(folder, "test")
            return (
                np.concatenate([a, b]),
                np.concatenate([la, lb]),
                list(FASHION_MNIST_CLASSES),
                "all",
            )
        images, labels = fashion_mnist_arrays(folder, split)
        return images, labels, list(FASHION_MNIST_CLASSES), split
    raise NotFoundError(
        f"unknown built-in source {source!r}; known: builtin:digits, fashion-mnist:DIR"
    )


def _list_files(source: str) -> tuple[list[str], str]:
    if is_remote(source):
        try:
            import fsspec
        except ImportError as exc:  # pragma: no cover - fsspec is a dependency
            raise DataError(f"reading {source} needs fsspec: {exc}") from exc
        try:
            fs, remote_root = fsspec.core.url_to_fs(source)
            protocol = source.split("://", 1)[0]
            remote = sorted(f"{protocol}://{p}" for p in fs.find(remote_root))
        except ImportError as exc:
            raise DataError(
                f"reading {source} needs the filesystem package for its scheme: {exc} "
                "(for s3:// install despina[s3])"
            ) from exc
        return remote, source
    root = local_path(source).resolve()
    files: list[str] = []
    # scandir gets file types from the directory listing, where rglob + stat asks for
    # each file again. Symlinks are followed only when they stay inside the root, so a
    # link cannot smuggle a file from outside the allowed roots into a task.
    pending = [str(root)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_symlink():
                    target = Path(os.path.realpath(e.path))
                    if not target.is_relative_to(root):
                        logger.warning("skipping %s: it links outside %s", e.path, root)
                        continue
                if e.is_dir(follow_symlinks=False):
                    pending.append(e.path)
                elif e.is_file():
                    files.append(e.path)
    files.sort()
    return files, str(root)


def _table_rows(path: Path) -> int:
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path).num_rows
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def plan(source: str, partitions: int) -> list[dict[str, Any]]:
    """Cut the source into at most ``partitions`` contiguous, non-empty pieces."""
    if source.startswith(("builtin:", "fashion-mnist:")):
        n = len(_image_arrays(source)[1])
        return _ranges(n, partitions, source)
    path = local_path(source)
    if not is_remote(source) and path.is_file():
        if path.suffix.lower() in TABLE_SUFFIXES:
            return _ranges(_table_rows(path), partitions, source)
        return [
            {
                "kind": "files",
                "paths": [str(path.resolve())],
                "root": str(path.parent.resolve()),
                "total": 1,
            }
        ]
    files, root = _list_files(source)
    if not files:
        raise DataError(f"data source {source} holds no files; nothing to run")
    k = min(partitions, len(files))
    cuts = np.linspace(0, len(files), k + 1).round().astype(int)
    return [
        {"kind": "files", "paths": files[a:b], "root": root, "total": int(b - a)}
        for a, b in itertools.pairwise(cuts)
    ]


def _ranges(n: int, partitions: int, source: str) -> list[dict[str, Any]]:
    if n == 0:
        raise DataError(f"data source {source} has no rows; nothing to run")
    k = min(partitions, n)
    cuts = np.linspace(0, n, k + 1).round().astype(int)
    return [
        {"kind": "rows", "start": int(a), "stop": int(b), "total": int(b - a)}
        for a, b in itertools.pairwise(cuts)
    ]


def records_for(source: str, spec: dict[str, Any]) -> list[ImageRecord]:
    """The partition as image records (id, path or pixels, label)."""
    if spec["kind"] == "files":
        root = spec["root"].rstrip("/") + "/"
        out = []
        for p in spec["paths"]:
            # Paths were listed under root; slicing is much cheaper than os.path.relpath.
            rel = p[len(root) :] if p.startswith(root) else os.path.basename(p)
            parent = rel.rsplit("/", 2)[-2] if "/" in rel else ""
            out.append(ImageRecord(id=rel, path=p, label=parent))
        return out
    images, labels, names, prefix = _image_arrays(source)
    a, b = spec["start"], spec["stop"]
    return [
        ImageRecord(
            id=f"{prefix}/{i:05d}",
            path=f"{source}#{i}",
            label=names[int(labels[i])],
            array=images[i],
        )
        for i in range(a, b)
    ]


def load_batch(source: str, spec: dict[str, Any]) -> Any:
    """What a script's ``process(batch, context)`` receives for this partition.

    Files: the list of paths. A table file: a pandas DataFrame of its rows. A built-in image
    set: a DataFrame with ``id``, ``label`` and ``image`` (uint8 arrays).
    """
    if spec["kind"] == "files":
        return list(spec["paths"])
    if source.startswith(("builtin:", "fashion-mnist:")):
        import pandas as pd

        recs = records_for(source, spec)
        return pd.DataFrame(
            {
                "id": [r.id for r in recs],
                "label": [r.label for r in recs],
                "image": [r.array for r in recs],
            }
        )
    path = local_path(source)
    a, b = spec["start"], spec["stop"]
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path).slice(a, b - a).to_pandas()
    import pyarrow.parquet as pq

    return pq.read_table(path).slice(a, b - a).to_pandas()

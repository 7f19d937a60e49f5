"""Where datasets come from: class folders, CSV/Parquet manifests and built-in real datasets.

Source strings:

- ``path/to/folder``: one subfolder per class, images inside.
- ``path/to/manifest.csv`` or ``.parquet``: columns ``path,label`` (and optionally ``id``),
  paths relative to the manifest's folder (or to ``root``); anything resolving outside is refused.
- ``builtin:digits``: scikit-learn's 1,797 handwritten digits (8x8).
- ``fashion-mnist:DIR`` (``?split=test&limit=N``; ``split=all``: both): the Fashion-MNIST IDX
  files in DIR.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from despina.core.errors import DataError, NotFoundError, PathEscapeError
from despina.data.images import ImageDataset, ImageRecord

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("path", "label", "id")
FASHION_MNIST_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)


def load_source(source: str | Path, root: str | Path | None = None) -> ImageDataset:
    """Build an :class:`ImageDataset` from a source string (see the module docstring)."""
    text = str(source)
    if text.startswith("builtin:"):
        return _builtin(text.removeprefix("builtin:"))
    if text.startswith("fashion-mnist:"):
        return load_fashion_mnist(text.removeprefix("fashion-mnist:"))
    path = Path(text).expanduser()
    if not path.exists():
        raise NotFoundError(f"source not found: {path}")
    if path.is_dir():
        return load_folder(path)
    if path.suffix.lower() in {".csv", ".parquet", ".pq"}:
        return load_manifest(path, root=Path(root) if root else None)
    raise DataError(
        f"cannot read {path}: give a folder with one subfolder per class, "
        "a .csv or .parquet manifest, builtin:digits or fashion-mnist:DIR"
    )


def load_folder(folder: Path) -> ImageDataset:
    """One subfolder per class; every file inside is a sample (broken ones become defects)."""
    folder = folder.resolve()
    records: list[ImageRecord] = []
    stray = 0
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            stray += 1
            continue
        # rglob does not descend into linked folders, so only a linked class folder or a
        # linked file can lead outside; resolving just those keeps big folders fast.
        linked = entry.is_symlink()
        for file in sorted(entry.rglob("*")):
            if file.name.startswith(".") or not file.is_file():
                continue
            if (linked or file.is_symlink()) and not _inside(file, folder):
                logger.warning("skipping %s: it links outside %s", file, folder)
                continue
            rel = file.relative_to(folder).as_posix()
            records.append(ImageRecord(id=rel, path=str(file), label=entry.name))
    if stray:
        logger.warning("ignored %d file(s) at the top of %s (not in a class folder)", stray, folder)
    if not records:
        raise DataError(
            f"no images found in {folder}: put each class's images in a subfolder "
            f"named after the class (e.g. {folder}/cat/001.png)"
        )
    return ImageDataset(tuple(records), source=str(folder), root=folder)


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def load_manifest(manifest: Path, root: Path | None = None) -> ImageDataset:
    """A CSV or Parquet manifest with columns path,label (and optionally id)."""
    manifest = manifest.resolve()
    base = (root or manifest.parent).resolve()
    try:
        if manifest.suffix.lower() == ".csv":
            table = pacsv.read_csv(
                manifest,
                convert_options=pacsv.ConvertOptions(
                    column_types={c: "string" for c in MANIFEST_COLUMNS}
                ),
            )
        else:
            table = pq.read_table(manifest)
    except Exception as exc:
        raise DataError(f"cannot read manifest {manifest}: {exc}") from exc
    columns = list(table.column_names)
    unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
    if unknown:
        raise DataError(
            f"manifest {manifest.name} has unknown column(s) {unknown}; "
            f"allowed: {', '.join(MANIFEST_COLUMNS)} (path and label required)"
        )
    missing_cols = [c for c in ("path", "label") if c not in columns]
    if missing_cols:
        raise DataError(f"manifest {manifest.name} lacks column(s) {missing_cols}")
    paths = [str(p) if p is not None else "" for p in table.column("path").to_pylist()]
    labels = [str(v) if v is not None else "" for v in table.column("label").to_pylist()]
    ids = table.column("id").to_pylist() if "id" in columns else [None] * len(paths)
    records = []
    for row, (p, label, given_id) in enumerate(zip(paths, labels, ids, strict=True), start=2):
        if not p or not label:
            raise DataError(f"manifest {manifest.name} line {row}: empty path or label")
        target = (base / p) if not Path(p).is_absolute() else Path(p)
        resolved = target.resolve()
        if not resolved.is_relative_to(base):
            raise PathEscapeError(
                f"manifest {manifest.name} line {row}: {p!r} resolves outside {base}; "
                "keep images inside the manifest's folder or pass --root"
            )
        rid = str(given_id) if given_id else resolved.relative_to(base).as_posix()
        records.append(
            ImageRecord(id=rid, path=str(resolved), label=label, missing=not resolved.is_file())
        )
    n_missing = sum(r.missing for r in records)
    if n_missing:
        logger.warning("%d file(s) listed in %s do not exist", n_missing, manifest.name)
    return ImageDataset(tuple(records), source=str(manifest), root=base)


def _builtin(name: str) -> ImageDataset:
    if name != "digits":
        raise NotFoundError(f"unknown built-in dataset {name!r}; known: digits")
    images, labels = digits_arrays()
    records = tuple(
        ImageRecord(id=f"digits/{i:04d}", path=f"builtin:digits/{i:04d}", label=str(y), array=img)
        for i, (img, y) in enumerate(zip(images, labels, strict=True))
    )
    return ImageDataset(records, source="builtin:digits")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 images (dark ink on white paper) and int labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (255 - np.round(d.images * (255 / 16))).astype(np.uint8)
    return images, d.target.astype(np.int64)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian header, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(dims))} values")
    return body.reshape(dims)


def fashion_mnist_arrays(folder: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28) and labels from the IDX files in ``folder``."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DataError(f"fashion-mnist split must be train or test, not {split!r}")

    def find(stem: str) -> Path:
        for name in (f"{stem}.gz", stem):
            if (folder / name).is_file():
                return folder / name
        raise NotFoundError(f"{stem}(.gz) not found in {folder}; see shared/DATA.md")

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


def load_fashion_mnist(spec: str) -> ImageDataset:
    """``DIR`` or ``DIR?split=test&limit=N``: Fashion-MNIST as an in-memory dataset;
    ``split=all``: the 60,000 training images, then the 10,000 test images."""
    folder_text, _, query = spec.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    split = params.get("split", "train")
    limit = int(params["limit"]) if "limit" in params else None
    if split not in ("train", "test", "all"):
        raise DataError(f"fashion-mnist split must be train, test or all, not {split!r}")
    folder = Path(folder_text).expanduser()
    parts = ("train", "test") if split == "all" else (split,)
    records: list[ImageRecord] = []
    for part in parts:
        images, labels = fashion_mnist_arrays(folder, part)
        left = None if limit is None else max(0, limit - len(records))
        images, labels = images[:left], labels[:left]
        records.extend(
            ImageRecord(
                id=f"{part}/{i:05d}",
                path=f"fashion-mnist:{part}/{i:05d}",
                label=FASHION_MNIST_CLASSES[int(y)],
                array=img,
            )
            for i, (img, y) in enumerate(zip(images, labels, strict=True))
        )
    return ImageDataset(tuple(records), source=f"fashion-mnist:{spec}")

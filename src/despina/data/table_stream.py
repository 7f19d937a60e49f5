"""Tables too large to hold: read in chunks, never whole, keeping a uniform sample of rows
for the audit and counting what can be counted over every row (rows, exact duplicates).

A CSV's cells become Python strings when read as text (the value checks need them so),
which takes several times the file's size in memory: a file above ``STREAM_BYTES`` is
streamed instead, and its audit is an audit of the sample, said so in its summary.

The CSV options and error messages are the ones every table read uses (``tables``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from despina.core.errors import DataError

#: Files larger than this are streamed and sampled.
STREAM_BYTES = 256 * 2**20
#: Rows kept for the audit of a streamed file, and rows read at a time.
SAMPLE_ROWS = 200_000
CHUNK_ROWS = 100_000
ROW = "__row"


#: How a CSV is read as text: every cell a string, nothing turned into NaN by pandas.
CSV_TEXT: dict[str, object] = {
    "dtype": str, "keep_default_na": False, "na_values": [], "skipinitialspace": True,
}  # fmt: skip


@dataclass(frozen=True)
class Streamed:
    """What was counted over the whole of a table too large to hold (its audit reads a sample)."""

    rows_in_file: int
    #: Rows of the whole file identical to an earlier row in every column.
    duplicate_rows: int
    #: Each sampled row's position among the file's data rows (0 = the first after the header).
    rows: np.ndarray


@contextmanager
def csv_errors(file: Path) -> Iterator[None]:
    """pandas' errors while reading ``file`` as one-line DataErrors that say what to do."""
    try:
        yield
    except pd.errors.EmptyDataError:
        raise DataError(f"{file} is empty: a table to audit needs a header and some rows") from None
    except pd.errors.ParserError as exc:
        # pandas says e.g. "Expected 5 fields in line 7, saw 6".
        detail = str(exc).strip().splitlines()[-1]
        raise DataError(
            f"{file} is not a well-formed CSV ({detail}): fix that row (a stray separator or "
            "an unquoted comma) and run again"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{file} is not UTF-8 text ({exc.reason}): save it as UTF-8") from None


def should_stream(file: Path) -> bool:
    return file.stat().st_size > STREAM_BYTES


def _chunks(file: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if file.suffix.lower() == ".csv":
        yield from pd.read_csv(file, chunksize=chunk_rows, **CSV_TEXT)  # type: ignore[call-overload]
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(file).iter_batches(batch_size=chunk_rows):
        yield batch.to_pandas()


def sample_rows(
    file: Path, rows: int = SAMPLE_ROWS, seed: int = 0, chunk_rows: int = CHUNK_ROWS
) -> tuple[pd.DataFrame, Streamed]:
    """Stream ``file`` once: keep the ``rows`` rows with the smallest seeded random keys (a
    uniform sample whatever the file's size, as text, in file order) and hash every row to
    count exact copies."""
    rng = np.random.default_rng(seed)
    kept: pd.DataFrame | None = None
    keys = np.empty(0)
    hashes: list[np.ndarray] = []
    seen = 0
    with csv_errors(file):
        for chunk in _chunks(file, chunk_rows):
            hashes.append(pd.util.hash_pandas_object(chunk, index=False).to_numpy())
            chunk = chunk.assign(**{ROW: np.arange(seen, seen + len(chunk))})
            seen += len(chunk)
            kept = chunk if kept is None else pd.concat([kept, chunk], ignore_index=True)
            keys = np.concatenate([keys, rng.random(len(chunk))])
            if len(kept) > rows:
                best = np.argpartition(keys, rows)[:rows]
                kept, keys = kept.iloc[best].reset_index(drop=True), keys[best]
    if kept is None or seen == 0:
        raise DataError(f"{file} has no rows: a table to audit needs a header and some rows")
    kept = kept.sort_values(ROW, kind="stable")
    duplicates = int(seen - np.unique(np.concatenate(hashes)).size)
    return kept.drop(columns=ROW).reset_index(drop=True), Streamed(
        seen, duplicates, kept[ROW].to_numpy()
    )

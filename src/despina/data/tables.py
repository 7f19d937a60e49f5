"""Tables: read a CSV or Parquet file as it is, infer its schema, and keep the raw cells.

Cells are read as text from CSV (and as stored from Parquet), so that a word in a numeric
column is a finding the value check reports rather than a row pandas silently turns into
NaN. The schema says, per column, whether it is numeric or categorical and whether it had
missing cells; a small YAML file overrides the inferred kinds.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from despina.core.config import FrozenModel
from despina.core.errors import ConfigError, DataError, NotFoundError
from despina.data import table_stream

TABLE_SUFFIXES = frozenset({".csv", ".parquet", ".pq"})
#: A column is numeric when at least this share of its non-missing cells parse as numbers;
#: the rest of its cells are then type violations, not categories.
NUMERIC_SHARE = 0.9
#: The tokens read as a missing cell (pandas' defaults, minus words such as "None" that
#: can be a real category, plus the empty string).
MISSING_TOKENS = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL", "#N/A", "-"})

ColumnKind = Literal["numeric", "categorical"]


class ColumnSpec(FrozenModel):
    """One column of a table: its kind and whether it had missing cells."""

    name: str
    kind: ColumnKind
    nullable: bool = False
    #: The categories a categorical column may hold; None: those seen in the data.
    categories: tuple[str, ...] | None = None


class TableSchema(FrozenModel):
    """The feature columns of a table and its target (label) column, if any."""

    columns: tuple[ColumnSpec, ...]
    target: str | None = None

    @property
    def numeric(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "categorical"]

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise NotFoundError(f"no column {name!r} in the schema")


@dataclass(frozen=True)
class Table:
    """A table as read: raw cells (text or stored values), its schema and where it came from."""

    frame: pd.DataFrame
    schema: TableSchema
    source: str
    streamed: table_stream.Streamed | None = None

    @property
    def row_ids(self) -> list[str]:
        """Each row's position in the file (0 = the first data row)."""
        rows = self.streamed.rows if self.streamed else range(len(self.frame))
        return [str(int(i)) for i in rows]

    @property
    def features(self) -> pd.DataFrame:
        return self.frame[[c.name for c in self.schema.columns]]

    @property
    def labels(self) -> list[str] | None:
        if self.schema.target is None:
            return None
        return [label_text(v) for v in self.frame[self.schema.target]]


def label_text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = str(value)
    return text[:-2] if text.endswith(".0") and text[:-2].lstrip("-").isdigit() else text


def natural_order(name: str) -> tuple[int, float, str]:
    """Sort key: numeric class names in numeric order (2 before 10), then the others."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def source_columns(source: str | Path) -> set[str] | None:
    """The lower-cased column names of a CSV or Parquet file; None for anything else."""
    path = Path(str(source)).expanduser()
    if path.suffix.lower() not in TABLE_SUFFIXES or not path.is_file():
        return None
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8", errors="replace") as fh:
                header = next(csv.reader(fh), [])
        else:
            import pyarrow.parquet as pq

            header = list(pq.read_schema(path).names)
    except (OSError, ValueError):
        return None
    return {h.strip().lower() for h in header}


def is_table_source(source: str | Path) -> bool:
    """A CSV or Parquet file whose columns do not name images (no ``path`` column)."""
    columns = source_columns(source)
    return columns is not None and "path" not in columns


def is_sequence_source(source: str | Path) -> bool:
    """A CSV or Parquet file in the long series layout (``series_id`` and ``t`` columns)."""
    columns = source_columns(source)
    return columns is not None and {"series_id", "t"} <= columns


def read_table(
    path: str | Path, target: str | None = None, schema_file: str | Path | None = None
) -> Table:
    """Read ``path`` (CSV or Parquet) with its schema inferred and ``schema_file`` applied;
    a file too large to hold is streamed and a uniform sample of its rows kept."""
    file = _table_file(path)
    streamed = None
    if table_stream.should_stream(file):
        sampled, streamed = table_stream.sample_rows(file, table_stream.SAMPLE_ROWS)
        frame = _checked(_tidy(sampled, file), file, target)
    else:
        frame = _checked(_read_csv(file) if file.suffix.lower() == ".csv" else _read_parquet(file),
                         file, target)  # fmt: skip
    overrides = load_overrides(schema_file) if schema_file else {}
    return Table(frame, infer_schema(frame, target, overrides), str(file), streamed)


def read_cells(path: str | Path, target: str | None = None) -> tuple[pd.DataFrame, str]:
    """The raw cells of a CSV or Parquet file and its resolved name; refuses an empty file,
    a ``target`` the file does not have, and a file too large to hold whole."""
    file = _table_file(path)
    if table_stream.should_stream(file):
        size = file.stat().st_size / 2**20
        raise DataError(
            f"{file} is {size:,.0f} MiB; series are read whole, at most "
            f"{table_stream.STREAM_BYTES / 2**20:,.0f} MiB: split it into files by series_id "
            "and audit them one at a time"
        )
    frame = _read_csv(file) if file.suffix.lower() == ".csv" else _read_parquet(file)
    return _checked(frame, file, target), str(file)


def _table_file(path: str | Path) -> Path:
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise NotFoundError(f"table not found: {file}")
    if file.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(f"cannot read {file} as a table: give a .csv or .parquet file")
    return file


def _checked(frame: pd.DataFrame, file: Path, target: str | None) -> pd.DataFrame:
    if frame.shape[1] == 0 or len(frame) == 0:
        raise DataError(f"{file} has no rows: a table to audit needs a header and some rows")
    if target is not None and target not in frame.columns:
        raise DataError(
            f"no column {target!r} in {file}; its columns are: {', '.join(map(str, frame.columns))}"
        )
    return frame


def _read_csv(file: Path) -> pd.DataFrame:
    with table_stream.csv_errors(file):
        frame = pd.read_csv(file, **table_stream.CSV_TEXT)  # type: ignore[call-overload]
    return _tidy(frame, file)


def _tidy(frame: pd.DataFrame, file: Path) -> pd.DataFrame:
    """Column names stripped and unique; text cells stripped, missing tokens as None."""
    frame.columns = [str(c).strip() for c in frame.columns]
    dupes = frame.columns[frame.columns.duplicated()].tolist()
    if dupes:
        raise DataError(f"{file} names columns more than once: {dupes}; rename them")
    return frame.apply(lambda col: col.map(_cell))


def _cell(value: object) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip()
    return None if text in MISSING_TOKENS else text


def _read_parquet(file: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(file)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {file} as Parquet: {exc}") from None


def numeric_values(column: pd.Series) -> np.ndarray:
    """The column as float64: cells that are not numbers (or are missing) become NaN."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.to_numpy(np.float64, na_value=np.nan)
    return pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan)


def column_span(values: np.ndarray) -> float:
    """A numeric column's typical spread: its 1st-99th percentile span, at least a tenth of
    its full range (a column that is nearly constant still has a scale), and 1 (or the
    median's size) for a constant one."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    lo, hi = np.quantile(finite, [0.01, 0.99])
    span = max(float(hi - lo), 0.1 * float(finite.max() - finite.min()))
    return span or max(abs(float(np.median(finite))), 1.0)


def is_missing(column: pd.Series) -> np.ndarray:
    """Missing cells: None/NaN (a float NaN stored in a numeric column included)."""
    return column.isna().to_numpy(bool)


def infer_schema(
    frame: pd.DataFrame, target: str | None, overrides: dict[str, ColumnKind] | None = None
) -> TableSchema:
    """Numeric where at least NUMERIC_SHARE of the non-missing cells are numbers (integer
    codes stay numeric: ordinal codes train fine as numbers); categorical otherwise."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(map(str, frame.columns)))
    if unknown:
        raise ConfigError(f"the schema file names columns the table lacks: {unknown}")
    columns = []
    for name in frame.columns:
        if name == target:
            continue
        col = frame[name]
        missing = is_missing(col)
        kind = overrides.get(str(name))
        if kind is None:
            present = int((~missing).sum())
            parsed = int((~np.isnan(numeric_values(col))).sum())
            kind = "numeric" if present and parsed / present >= NUMERIC_SHARE else "categorical"
        columns.append(ColumnSpec(name=str(name), kind=kind, nullable=bool(missing.any())))
    if not columns:
        raise DataError("the table has no feature columns besides the target")
    return TableSchema(columns=tuple(columns), target=target)


def load_overrides(path: str | Path) -> dict[str, ColumnKind]:
    """``columns: {NAME: numeric|categorical}`` from a YAML file."""
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise NotFoundError(f"schema file not found: {file}")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("columns", {}), dict):
        raise ConfigError(f"{file}: write `columns:` then one `NAME: numeric|categorical` a line")
    out: dict[str, ColumnKind] = {}
    for name, kind in (data.get("columns") or {}).items():
        try:
            out[str(name)] = ColumnSpec(name=str(name), kind=kind).kind
        except ValidationError:
            raise ConfigError(
                f"{file}: column {name!r} has kind {kind!r}; use numeric or categorical"
            ) from None
    return out

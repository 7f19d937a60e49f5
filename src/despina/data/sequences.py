"""Sequences: many series, each with one or more channels, from a CSV or Parquet file.

Two layouts:
- **long**: one row per step, ``series_id, t, value[, value2 ...][, label]``; steps are
  ordered by ``t``. Without ``series_id`` the file is one signal. Irregular timestamps
  and missing steps are found and recorded per series, never filled in: the model sees
  the values in their order, padded at the end.
- **wide**: one row per series, every column but the target a step of one channel.

Series of different lengths are padded at the end with NaN to the longest (at most
``MAX_LENGTH``); NaN and infinite values are recorded as findings and become 0 after
normalization.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from despina.core.errors import DataError
from despina.data.tables import label_text, numeric_values, read_cells

MAX_LENGTH = 1_000_000
#: Series × channels × steps held in memory at most (float32: 400 MB).
MAX_CELLS = 100_000_000
#: A step this many times the series' typical step is a gap (missing steps).
GAP_FACTOR = 1.5


@dataclass(frozen=True)
class SequenceSet:
    """Series as an array (n, channels, length), NaN where a series has no value."""

    x: np.ndarray
    ids: list[str]
    labels: list[str] | None
    lengths: np.ndarray  # int (n,): steps each series really has
    channels: list[str]
    source: str
    layout: str  # "long" or "wide"
    #: Per series, what reading found: gaps, irregular steps, a label that changes.
    findings: list[list[str]] = field(default_factory=list)


def read_sequences(path: str | Path, target: str | None = None) -> SequenceSet:
    """Read ``path`` in the long layout when it has a ``t`` column, else in the wide one."""
    frame, source = read_cells(path, target)
    columns = {c.lower(): c for c in frame.columns}
    if "t" in columns:
        if "series_id" not in columns:  # one signal
            frame = frame.assign(series_id="0")
            columns["series_id"] = "series_id"
        return _long(frame, columns["series_id"], columns["t"], target, source)
    return _wide(frame, target, source)


def _numeric(frame: pd.DataFrame) -> np.ndarray:
    return np.stack([numeric_values(frame[c]) for c in frame.columns], axis=1)


def _wide(frame: pd.DataFrame, target: str | None, source: str) -> SequenceSet:
    steps = [c for c in frame.columns if c != target]
    if not steps:
        raise DataError(f"{source}: no step columns besides the target")
    if len(steps) > MAX_LENGTH:
        raise DataError(f"{source}: {len(steps)} steps a series; at most {MAX_LENGTH} are read")
    raw = frame[steps]
    values = _numeric(raw)
    text = raw.notna().to_numpy() & np.isnan(values)
    findings = [[f"not_a_number:{int(k)}"] if k else [] for k in text.sum(axis=1)]
    present = ~np.isnan(values)
    lengths = np.where(present.any(axis=1), present.shape[1] - np.argmax(present[:, ::-1], 1), 0)
    labels = [label_text(v) for v in frame[target]] if target else None
    return SequenceSet(
        x=values[:, None, :].astype(np.float32),
        ids=[str(i) for i in range(len(frame))],
        labels=labels,
        lengths=lengths.astype(np.int64),
        channels=["value"],
        source=source,
        layout="wide",
        findings=findings,
    )


def _long(frame: pd.DataFrame, sid: str, t: str, target: str | None, source: str) -> SequenceSet:
    value_cols = [c for c in frame.columns if c not in (sid, t, target)]
    if not value_cols:
        raise DataError(f"{source}: no value column besides {sid}, {t} and the target")
    times = pd.to_numeric(frame[t], errors="coerce")
    if times.isna().all():
        times = pd.to_datetime(frame[t], errors="coerce").astype("int64").astype(float)
        times[pd.to_datetime(frame[t], errors="coerce").isna()] = np.nan
    if times.isna().any():
        bad = frame.loc[times.isna(), t].iloc[0]
        raise DataError(
            f"{source}: column {t!r} holds {bad!r}, which is neither a number nor a date; "
            "give every step a time"
        )
    values = _numeric(frame[value_cols])
    work = pd.DataFrame({"sid": frame[sid].astype(str), "t": times.to_numpy()})
    order = np.lexsort((work["t"].to_numpy(), work["sid"].to_numpy()))
    work, values = work.iloc[order].reset_index(drop=True), values[order]
    labels_col = frame[target].iloc[order].reset_index(drop=True) if target else None
    groups = work.groupby("sid", sort=False).indices
    ids = [str(k) for k in groups]
    length = min(MAX_LENGTH, max(len(v) for v in groups.values()))
    if len(groups) * len(value_cols) * length > MAX_CELLS:
        raise DataError(
            f"{source}: {len(groups)} series of up to {length} steps and {len(value_cols)} "
            f"channels exceed the {MAX_CELLS:,} values an audit holds in memory; split the "
            "file or cut the longest series"
        )
    x = np.full((len(ids), len(value_cols), length), np.nan, np.float32)
    lengths = np.zeros(len(ids), np.int64)
    findings: list[list[str]] = []
    labels: list[str] | None = [] if target else None
    for k, series in enumerate(ids):
        rows = groups[series]
        found: list[str] = []
        v = values[rows][:length]
        x[k, :, : len(v)] = v.T
        lengths[k] = len(rows)
        if len(rows) > MAX_LENGTH:
            found.append(f"truncated:{len(rows)}")
        steps = np.diff(work["t"].to_numpy()[rows])
        if len(steps):
            typical = float(np.median(steps))
            if (steps == 0).any():
                found.append(f"repeated_time:{int((steps == 0).sum())}")
            if typical > 0 and (steps > GAP_FACTOR * typical).any():
                missing = int(np.round(steps[steps > GAP_FACTOR * typical] / typical - 1).sum())
                found.append(f"gap:{missing}")
            elif typical > 0 and np.abs(steps - typical).max() > 0.1 * typical:
                found.append("irregular")
        if labels is not None and labels_col is not None:
            given = [label_text(v) for v in labels_col.iloc[rows]]
            counts = Counter(g for g in given if g)
            labels.append(counts.most_common(1)[0][0] if counts else "")
            if len(counts) > 1:
                found.append("label_changes")
        findings.append(found)
    return SequenceSet(
        x, ids, labels, lengths, list(map(str, value_cols)), source, "long", findings
    )

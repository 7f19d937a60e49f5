"""Sequences: bad values and duplicate series.

Values. What reading found (gaps in the timestamps, irregular or repeated steps, a label
that changes within a series, cells that are not numbers) plus, per series: missing
steps inside its length, infinite values, a flatline (the same value repeated over at
least a fifth of the series and ten steps: a stuck sensor), a series shorter than half
the median length, and a series of a single step (which no model can read).

Anomalies. In a series long enough (four windows), the stretches unlike any other part of
it: discords of the matrix profile over windows of half the series' dominant period.

Duplicates. Exact copies share every value; near copies differ at no step by more than
1% of the channel's span (the 1st-99th percentile span of all its values); sets are
formed and flagged as for table rows.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from despina.audit.base import AuditContext, Check, CheckResult, robust_z, sigmoid
from despina.audit.checks.rows import NEAR_TOLERANCE, duplicate_sets
from despina.audit.checks.values import findings_result
from despina.data.tables import column_span

FLATLINE_SHARE = 0.2
FLATLINE_MIN = 10


def longest_run(values: np.ndarray) -> int:
    """The longest run of identical consecutive finite values."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0
    change = np.flatnonzero(np.diff(v) != 0)
    bounds = np.concatenate([[-1], change, [v.size - 1]])
    return int(np.diff(bounds).max())


class SequenceValueCheck(Check):
    name: ClassVar[str] = "values"
    description: ClassVar[str] = "gaps, irregular steps, missing and stuck values in series"
    modalities: ClassVar[frozenset[str]] = frozenset({"sequence"})
    requires: ClassVar[frozenset[str]] = frozenset({"sequences"})

    def run(self, ctx: AuditContext) -> CheckResult:
        assert ctx.sequences is not None  # ensured by requires
        seq = ctx.sequences
        n = len(seq.ids)
        if n == 0:
            return self.empty(ctx)
        median_length = float(np.median(seq.lengths))
        found: list[list[str]] = []
        for k in range(n):
            f = list(seq.findings[k]) if seq.findings else []
            length = int(seq.lengths[k])
            x = seq.x[k, :, :length]
            if length <= 1:
                f.append("too_short")
            elif length < 0.5 * median_length:
                f.append(f"short:{length}")
            missing = int(np.isnan(x).sum())
            if missing:
                f.append(f"missing:{missing}")
            if np.isinf(x).any():
                f.append(f"nonfinite:{int(np.isinf(x).sum())}")
            run = max((longest_run(c) for c in x), default=0)
            if length and run >= max(FLATLINE_MIN, FLATLINE_SHARE * length):
                f.append(f"flatline:{run}")
            found.append(f)
        return findings_result(self.name, found)


class SequenceDuplicateCheck(Check):
    name: ClassVar[str] = "duplicate"
    description: ClassVar[str] = "exact, near and conflicting duplicate series"
    modalities: ClassVar[frozenset[str]] = frozenset({"sequence"})
    requires: ClassVar[frozenset[str]] = frozenset({"sequences"})

    def run(self, ctx: AuditContext) -> CheckResult:
        assert ctx.sequences is not None
        x = ctx.sequences.x
        if len(x) == 0:
            return self.empty(ctx)
        keys = [np.nan_to_num(s, nan=np.inf).tobytes().hex() for s in x]
        scaled = np.empty_like(x, dtype=np.float64)
        for c in range(x.shape[1]):
            tol = NEAR_TOLERANCE * column_span(x[:, c].ravel().astype(np.float64))
            scaled[:, c] = np.where(np.isfinite(x[:, c]), x[:, c] / tol, -1e9)
        return duplicate_sets(self.name, keys, scaled.reshape(len(x), -1), ctx.given_labels)


#: A discord whose robust z-score (against all windows of its series) passes this is an
#: anomaly; the window is half the dominant period, within these bounds.
ANOMALY_Z = 6.0
WINDOW_BOUNDS = (8, 512)
MAX_ANOMALIES = 20


def dominant_period(x: np.ndarray, max_lag: int = 2048) -> int | None:
    """The lag of the autocorrelation's highest peak after its first zero crossing."""
    v = x[np.isfinite(x)]
    v = v - v.mean()
    lags = min(max_lag, len(v) // 3)
    if lags < 4 or not v.any():
        return None
    spectrum = np.fft.rfft(v, n=2 * len(v))
    ac = np.fft.irfft(spectrum * np.conj(spectrum))[:lags]
    ac = ac / ac[0]
    below = np.flatnonzero(ac < 0)
    if below.size == 0:
        return None
    start = int(below[0])
    return start + int(np.argmax(ac[start:])) if start < lags - 1 else None


def window_for(x: np.ndarray) -> int:
    period = dominant_period(x)
    w = period // 2 if period else min(64, len(x) // 8)
    return int(np.clip(w, *WINDOW_BOUNDS))


def matrix_profile(x: np.ndarray, w: int) -> np.ndarray:
    """For each window of ``w`` steps, the z-normalized Euclidean distance to its nearest
    window starting at least ``w / 4`` steps away (Yeh et al., "Matrix Profile I", ICDM
    2016): a window unlike any other part of the series (a discord) scores high.

    Our own, with FAISS's exact search: stumpy computes the same distances but compiles
    its kernels with numba in every new process, which cost more than the whole audit of
    a signal of a few thousand steps when tried."""
    import faiss

    values = np.where(np.isfinite(x), x, np.nanmedian(x) if np.isfinite(x).any() else 0.0)
    windows = np.lib.stride_tricks.sliding_window_view(values, w)
    sd = windows.std(axis=1, keepdims=True)
    z = (windows - windows.mean(axis=1, keepdims=True)) / np.maximum(sd, 1e-8)
    z = np.ascontiguousarray(z, np.float32)
    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatL2(w)
    index.add(z)
    exclusion = int(np.ceil(w / 4))
    out = np.full(len(z), np.nan)
    todo = np.arange(len(z))
    k = min(len(z), 2 * exclusion + 8)
    while todo.size:
        dist, idx = index.search(z[todo], k)
        far = (np.abs(idx - todo[:, None]) >= exclusion) & (idx >= 0)
        found = far.any(axis=1)
        first = np.argmax(far, axis=1)
        out[todo[found]] = np.sqrt(np.maximum(dist[found, first[found]], 0.0))
        todo = todo[~found]
        if k >= len(z):
            break
        k = min(len(z), k * 4)
    return np.nan_to_num(out, nan=0.0)


def discords(profile: np.ndarray, w: int, z_min: float) -> list[tuple[int, float]]:
    """(start, z) of non-overlapping windows whose profile's robust z passes ``z_min``,
    strongest first."""
    z = robust_z(profile, floor=1e-6)
    picks: list[tuple[int, float]] = []
    for i in np.argsort(-z):
        if z[i] < z_min or len(picks) >= MAX_ANOMALIES:
            break
        if all(abs(int(i) - j) >= w for j, _ in picks):
            picks.append((int(i), float(z[i])))
    return picks


def step_scores(profile: np.ndarray, w: int) -> np.ndarray:
    """Each step's score: the highest profile value of the windows covering it."""
    n = len(profile) + w - 1
    padded = np.concatenate([np.full(w - 1, -np.inf), profile, np.full(w - 1, -np.inf)])
    return np.lib.stride_tricks.sliding_window_view(padded, w)[:n].max(axis=1)


class AnomalyCheck(Check):
    name: ClassVar[str] = "anomaly"
    description: ClassVar[str] = "stretches of a long series unlike the rest of it (discords)"
    modalities: ClassVar[frozenset[str]] = frozenset({"sequence"})
    requires: ClassVar[frozenset[str]] = frozenset({"sequences"})

    def __init__(self, z_min: float = ANOMALY_Z) -> None:
        self.z_min = z_min

    def run(self, ctx: AuditContext) -> CheckResult:
        assert ctx.sequences is not None
        seq = ctx.sequences
        n = len(seq.ids)
        flags, scores = np.zeros(n, bool), np.ones(n)
        found: list[list[dict[str, float | int | str]]] = [[] for _ in range(n)]
        steps: dict[int, np.ndarray] = {}
        for k in range(n):
            length = int(seq.lengths[k])
            best = np.zeros(length)
            for c in range(seq.x.shape[1]):
                x = seq.x[k, c, :length].astype(np.float64)
                w = window_for(x)
                if length < 4 * w:
                    continue
                profile = matrix_profile(x, w)
                z = robust_z(profile, floor=1e-6)
                best = np.maximum(best, step_scores(z, w))
                for start, zz in discords(profile, w, self.z_min):
                    found[k].append({"channel": seq.channels[c], "start": start,
                                     "end": start + w, "z": round(zz, 3)})  # fmt: skip
            if length and best.any():
                steps[k] = best
                flags[k] = bool(found[k])
                scores[k] = float(sigmoid(np.array(self.z_min - best.max()))) if found[k] else 1.0
        return CheckResult(
            name=self.name,
            scores=np.clip(scores, 0.0, 1.0),
            flags=flags,
            score=float(1.0 - flags.mean()) if n else 1.0,
            details={"anomalies": found, "step_scores": steps},
        )

"""Sequences: bad values and duplicate series.

Values. What reading found (gaps in the timestamps, irregular or repeated steps, a label
that changes within a series, cells that are not numbers) plus, per series: missing
steps inside its length, infinite values, a flatline (the same value repeated over at
least a fifth of the series and ten steps: a stuck sensor), a series shorter than half
the median length, and a series of a single step (which no model can read).

Anomalies. In a series long enough (four windows), the stretches unlike any other part of
it: discords of the matrix profile over windows of half the series' dominant period, and
the steps a forecaster trained on the series cannot predict (its residuals, given by the
job in ``AuditContext.residuals``). A residual counts when it lies at least twice as far
from the series' median residual as its 99th percentile does: anomalies are taken to be
rarer than one step in a hundred, and a series whose residuals are heavy-tailed anyway (a
heartbeat's sharp peaks) needs a larger one. Each such stretch is a ``level_shift`` when
the series' median after it differs from the one before by twice the spread around them,
a ``spike`` when it is at most three steps wide and the level returns, else a ``pattern``;
spikes and level shifts are value findings too.

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


def long_window(x: np.ndarray) -> int | None:
    """The anomaly window of a series long enough to hold four of them, else None."""
    if len(x) < 4 * WINDOW_BOUNDS[0]:
        return None
    w = window_for(x)
    return w if len(x) >= 4 * w else None


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
    description: ClassVar[str] = (
        "gaps, irregular steps, missing and stuck values, spikes and level shifts"
    )
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
            kinds = [e["kind"] for c in range(x.shape[0]) for e in series_events(ctx, k, c)]
            for kind in ("spike", "level_shift"):
                if kinds.count(kind):
                    f.append(f"{kind}:{kinds.count(kind)}")
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
WINDOW_BOUNDS = (32, 512)
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


#: A residual this many times as far from the median residual as the 99th percentile is
#: an anomalous step; a stretch at most SPIKE_WIDTH steps wide whose level returns is a spike.
RESIDUAL_TAIL = 2.0
SPIKE_WIDTH = 3
LEVEL_SPREAD = 2.0
MIN_RESIDUALS = 100


def residual_tail(residual: np.ndarray) -> np.ndarray | None:
    """Each step's residual as a multiple of ``RESIDUAL_TAIL`` tail distances (1 = the
    threshold), or None when the series has too few steps to place its 99th percentile.
    The leading zeros (steps the forecaster had no context for) are left out."""
    skip = int(np.argmax(residual > 0))
    r = residual[skip:]
    if r.size < MIN_RESIDUALS:
        return None
    med = float(np.median(r))
    q = float(np.quantile(r, 0.99)) - med
    if q <= 0:
        return None
    out = np.zeros(len(residual))
    out[skip:] = (r - med) / (RESIDUAL_TAIL * q)
    return out


def stretches(hit: np.ndarray, join: int = 2) -> list[tuple[int, int]]:
    """[start, end) runs of True, joining runs fewer than ``join`` steps apart."""
    idx = np.flatnonzero(hit)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > join)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def event_kind(x: np.ndarray, start: int, end: int, w: int) -> str:
    """``level_shift``, ``spike`` or ``pattern`` for an anomalous stretch of ``x``."""
    span = 2 * w
    before, after = x[max(0, start - span) : start], x[end : end + span]
    before, after = before[np.isfinite(before)], after[np.isfinite(after)]
    if len(before) >= w and len(after) >= w:
        mb, ma = float(np.median(before)), float(np.median(after))
        spread = 1.4826 * float(np.median(np.abs(np.concatenate([before - mb, after - ma]))))
        if abs(ma - mb) >= LEVEL_SPREAD * max(spread, 1e-12):
            return "level_shift"
    return "spike" if end - start <= SPIKE_WIDTH else "pattern"


def residual_events(x: np.ndarray, tail: np.ndarray | None, w: int) -> list[dict[str, object]]:
    """The stretches of ``x`` its forecaster could not predict (``tail`` from
    :func:`residual_tail`), each with its kind."""
    if tail is None:
        return []
    return [
        {
            "kind": event_kind(x, a, b, w),
            "start": a,
            "end": b,
            "z": round(float(tail[a:b].max()), 3),
        }
        for a, b in stretches(tail >= 1.0)
    ]


def series_events(ctx: AuditContext, k: int, c: int) -> list[dict[str, object]]:
    """The forecaster's anomalous stretches in channel ``c`` of series ``k``, if it ran."""
    assert ctx.sequences is not None
    residual = (ctx.residuals or {}).get((k, c))
    if residual is None:
        return []
    x = ctx.sequences.x[k, c, : int(ctx.sequences.lengths[k])].astype(np.float64)
    w = long_window(x)
    return residual_events(x, residual_tail(residual), w) if w else []


def step_scores(profile: np.ndarray, w: int) -> np.ndarray:
    """Each step's score: the highest profile value of the windows covering it."""
    n = len(profile) + w - 1
    padded = np.concatenate([np.full(w - 1, -np.inf), profile, np.full(w - 1, -np.inf)])
    return np.lib.stride_tricks.sliding_window_view(padded, w)[:n].max(axis=1)


class AnomalyCheck(Check):
    name: ClassVar[str] = "anomaly"
    description: ClassVar[str] = "stretches of a long series unlike the rest of it or its forecast"
    modalities: ClassVar[frozenset[str]] = frozenset({"sequence"})
    requires: ClassVar[frozenset[str]] = frozenset({"sequences"})

    def __init__(self, z_min: float = ANOMALY_Z) -> None:
        self.z_min = z_min

    def run(self, ctx: AuditContext) -> CheckResult:
        assert ctx.sequences is not None
        seq = ctx.sequences
        n = len(seq.ids)
        flags, scores = np.zeros(n, bool), np.ones(n)
        found: list[list[dict[str, object]]] = [[] for _ in range(n)]
        steps: dict[int, np.ndarray] = {}
        for k in range(n):
            length = int(seq.lengths[k])
            best = np.zeros(length)
            for c, channel in enumerate(seq.channels):
                x = seq.x[k, c, :length].astype(np.float64)
                w = long_window(x)
                if w is None:
                    continue
                profile = matrix_profile(x, w)
                best = np.maximum(best, step_scores(robust_z(profile, floor=1e-6), w) / self.z_min)
                picked = discords(profile, w, self.z_min)
                for start, zz in picked:
                    found[k].append({"channel": channel, "kind": "discord", "start": start,
                                     "end": start + w, "z": round(zz / self.z_min, 3)})  # fmt: skip
                residual = (ctx.residuals or {}).get((k, c))
                tail = None if residual is None else residual_tail(residual)
                if tail is not None:
                    best = np.maximum(best, tail)
                events = [
                    {"channel": channel, **e}
                    for e in residual_events(x, tail, w)
                    if e["kind"] != "pattern"
                    or not any(
                        s <= e["start"] and e["end"] <= s + w  # type: ignore[operator]
                        for s, _ in picked
                    )
                ]
                events.sort(key=lambda e: -float(e["z"]))  # type: ignore[arg-type]
                found[k].extend(events[:MAX_ANOMALIES])
            found[k].sort(key=lambda e: -float(e["z"]))  # type: ignore[arg-type]
            if length and best.any():
                steps[k] = best
                flags[k] = bool(found[k])
                scores[k] = (
                    float(sigmoid(np.array(self.z_min * (1.0 - best.max())))) if found[k] else 1.0
                )
        return CheckResult(
            name=self.name,
            scores=np.clip(scores, 0.0, 1.0),
            flags=flags,
            score=float(1.0 - flags.mean()) if n else 1.0,
            details={"anomalies": found, "step_scores": steps},
        )

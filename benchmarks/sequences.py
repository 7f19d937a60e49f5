"""Sequence audit benchmark: label issues in series classification, per model family, and
anomalies in long unlabelled signals.

Anomalies (``--only anomalies``): ECG (sktime's mitdb.csv, 7,500 steps, 352 anomalous),
UCR KDD-135 (aeon, 7,501 steps, 12 anomalous) and Yahoo (sktime's yahoo.csv), on which
the residual rule was chosen, and aeon's ECG diff-count-3 (10,000 steps, 300 anomalous),
which was not looked at; audited without labels. AUROC of Despina's per-step score against
the naive detector (absolute lag-1 difference) in the same run; whether one of the three
strongest flagged stretches covers a labelled anomaly; precision and recall of the steps
inside flagged stretches. Then spikes and level shifts injected into the same signals and
into Daphnet's untouched nine-channel accelerometer recording.

Three UCR datasets bundled with aeon (train and test joined): ItalyPowerDemand (1,096
series of 24 steps, the target's dataset, on which the default family and training were
chosen), GunPoint (200 × 150) and ArrowHead (211 × 251), not looked at while choosing.
10% of the labels flipped to another class (seed 0). Despina's whole sequence audit (two
rounds, neighbour-averaged probabilities, cleanlab) with each family, beside cleanlab's
``find_label_issues`` on the out-of-fold probabilities of the same plain 1D-CNN trained
once (the anchor the field would write by hand).

    pip install -e '.[bench]' torch==2.13.0
    python benchmarks/sequences.py [--only labels|anomalies] [--families cnn,gru,lstm,hybrid]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import prf, table

from despina.core.config import AuditConfig
from despina.jobs.sequence_audit import audit_sequences, sequence_train_config
from despina.models.sequence import SequenceBuilder
from despina.preprocessing.sequence import SequencePipeline
from despina.training.crossval import cross_validate


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    import aeon.datasets as d

    x, y = getattr(d, f"load_{name}")()
    return np.asarray(x, np.float32), np.asarray(y).astype(str)


def flip(y: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = sorted(set(y))
    flipped = rng.random(len(y)) < rate
    noisy = y.copy()
    for i in np.flatnonzero(flipped):
        noisy[i] = rng.choice([c for c in classes if c != y[i]])
    return noisy, flipped


def wide_csv(x: np.ndarray, y: np.ndarray, path: Path) -> None:
    frame = pd.DataFrame(x[:, 0], columns=[f"t{i}" for i in range(x.shape[2])])
    frame.insert(0, "label", y)
    frame.to_csv(path, index=False)


def anchor(x: np.ndarray, y: np.ndarray, workers: int) -> np.ndarray:
    from cleanlab.filter import find_label_issues

    classes = sorted(set(y))
    yi = np.array([classes.index(v) for v in y])
    cfg = AuditConfig(workers=workers)
    xs = SequencePipeline().fit(x).transform(x)
    cv = cross_validate(xs, yi, len(classes), 5, cfg.model, sequence_train_config(cfg, len(y)),
                        0, workers, build=SequenceBuilder("cnn", 1))  # fmt: skip
    return np.asarray(find_label_issues(yi, cv.pred_probs), bool)


def signals() -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(name, whether the rules were chosen looking at it, values (steps, channels), truth)."""
    from importlib.resources import files

    import aeon.datasets as d

    out = []
    for name in ("mitdb", "yahoo"):
        frame = pd.read_csv(str(files("sktime") / "datasets" / "data" / name / f"{name}.csv"))
        out.append((name, "yes", frame[["data"]].to_numpy(float), frame["label"].to_numpy(bool)))
    x, y = d.load_kdd_tsad_135()
    out.append(("KDD-135", "yes", np.asarray(x, float).reshape(len(y), -1), np.asarray(y, bool)))
    x, y = d.load_ecg_diff_count_3()
    out.append(("ECG diff-count-3", "no", np.asarray(x, float).reshape(len(y), -1),
                np.asarray(y, bool)))  # fmt: skip
    return out


def audit_signal(x: np.ndarray) -> tuple[list[dict[str, object]], np.ndarray, str, float]:
    """Audit one signal (steps, channels) without labels: its anomalies, per-step score,
    value findings and seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        frame = pd.DataFrame(x, columns=[f"v{c}" for c in range(x.shape[1])])
        frame.insert(0, "t", np.arange(len(x)))
        frame.to_csv(Path(tmp) / "s.csv", index=False)
        t0 = time.perf_counter()
        report = audit_sequences(Path(tmp) / "s.csv", Path(tmp) / "out",
                                 AuditConfig(checks=("anomaly", "values")))  # fmt: skip
        seconds = time.perf_counter() - t0
    result = report.outcomes["anomaly"].result
    values = str(report.samples["value_findings"].iloc[0])
    return result.details["anomalies"][0], result.details["step_scores"][0], values, seconds


def anomalies() -> None:
    from sklearn.metrics import roc_auc_score

    rows = []
    for name, tuned, x, truth in signals():
        found, score, _, seconds = audit_signal(x)
        inside = np.zeros(len(x), bool)
        for a in found:
            inside[a["start"] : a["end"]] = True
        top3 = any(truth[a["start"] : a["end"]].any() for a in found[:3])
        naive = roc_auc_score(truth, np.abs(np.diff(x[:, 0], prepend=x[0, 0])))
        p, r, _ = prf(inside, truth)
        rows.append([name, tuned, len(x), int(truth.sum()), naive, roc_auc_score(truth, score),
                     "yes" if top3 else "no", len(found), p, r, f"{seconds:.1f}"])  # fmt: skip
    print(table(["signal", "rules chosen on it", "steps", "anomalous", "lag-1 AUROC",
                 "Despina AUROC", "anomaly in top 3", "stretches flagged", "step precision",
                 "step recall", "seconds"], rows))  # fmt: skip


def injected() -> None:
    """Spikes and level shifts injected into real signals (seed 0): five spikes of 0.5-1
    times the signal's 1st-99th percentile span at evenly spread steps in one copy, one
    level shift of half the span at a random step of the middle half in another; found
    when a stretch of that kind covers the step. The untouched signal's own findings
    beside them (Daphnet's 9 accelerometer channels have no labelled event)."""
    import aeon.datasets as d

    rng = np.random.default_rng(0)
    hosts = [(n, x) for n, _, x, _ in signals()]
    hosts.append(("Daphnet S06R02E0", np.asarray(d.load_daphnet_s06r02e0()[0], float)))
    rows = []
    for name, x in hosts:
        lo, hi = np.quantile(x[:, 0], [0.01, 0.99])
        spiked = x.copy()
        places = np.linspace(0, len(x), 7)[1:-1].astype(int) + rng.integers(-20, 20, 5)
        for i in places:
            spiked[i, 0] += rng.choice([-1, 1]) * rng.uniform(0.5, 1.0) * (hi - lo)
        shifted = x.copy()
        at = int(rng.integers(len(x) // 4, 3 * len(x) // 4))
        shifted[at:, 0] += 0.5 * (hi - lo)
        own, _, own_values, _ = audit_signal(x)
        spikes, _, _, _ = audit_signal(spiked)
        shifts, _, _, _ = audit_signal(shifted)

        def covered(found: list[dict[str, object]], step: int, kind: str) -> bool:
            return any(a["kind"] == kind and a["start"] - 1 <= step < a["end"] + 1  # type: ignore[operator]
                       for a in found)  # fmt: skip

        rows.append([name, len(x), x.shape[1],
                     f"{sum(covered(spikes, int(i), 'spike') for i in places)}/5",
                     "yes" if covered(shifts, at, "level_shift") else "no",
                     sum(a["kind"] == "spike" for a in own),
                     sum(a["kind"] == "level_shift" for a in own), own_values or "-"])  # fmt: skip
    print(table(["signal", "steps", "channels", "spikes found", "level shift found",
                 "spikes on untouched", "level shifts on untouched",
                 "untouched value findings"], rows))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["labels", "anomalies"])
    ap.add_argument("--families", default="cnn,gru,lstm,hybrid")
    ap.add_argument("--datasets", default="italy_power_demand,gunpoint,arrow_head")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if args.only != "labels":
        anomalies()
        injected()
    if args.only == "anomalies":
        return
    rows = []
    for name in args.datasets.split(","):
        x, y = load(name)
        noisy, truth = flip(y, 0.1, 0)
        plain = prf(anchor(x, noisy, args.workers), truth)[2]
        tuned = "yes" if name == "italy_power_demand" else "no"
        row: list[object] = [name, tuned, len(y), x.shape[2], int(truth.sum()), plain]
        for family in args.families.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                wide_csv(x, noisy, Path(tmp) / "series.csv")
                t0 = time.perf_counter()
                report = audit_sequences(Path(tmp) / "series.csv", Path(tmp) / "out",
                                         AuditConfig(workers=args.workers), target="label",
                                         family=family)  # fmt: skip
                seconds = time.perf_counter() - t0
            flags = report.samples["is_label_issue"].to_numpy(bool)
            row.append(f"{prf(flags, truth)[2]:.3f} ({seconds:.0f} s)")
        rows.append(row)
    headers = ["dataset", "tuned on", "series", "steps", "flipped", "cleanlab + 1D-CNN F1",
               *[f"Despina {f} F1 (time)" for f in args.families.split(",")]]  # fmt: skip
    print(table(headers, rows))


if __name__ == "__main__":
    main()

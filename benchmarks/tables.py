"""Table audit benchmark: label issues, outliers, bad values and duplicates, and speed.

Every part runs on at least three real tables that ship offline (river, scikit-learn) and
says which one, if any, its rules were chosen on ("tuning"); the others were not looked at
while choosing them.

- labels: 10% symmetric label noise (seed 0). F1 of Despina's table audit (MLP, two
  rounds, cleanlab) beside cleanlab on out-of-fold probabilities of scikit-learn's
  HistGradientBoosting and of an MLPClassifier, 5 folds each.
- outliers: average precision of the outlier score of an audit without a target, beside
  an isolation forest on the raw features (scikit-learn defaults, seed 0). Shuttle's
  anomalies (the ODDS version); WBC built the ODDS way (benign breast-cancer rows plus 21
  malignant ones); ImageSegments with its `grass` class cut to 2% of the rows.
- values: the problems of ``despina.data.table_inject`` at 2% each, on a base table with
  rows holding missing cells and exact feature duplicates removed first (a rule set before
  the first run). Recall per kind; share of untouched rows flagged by the value or
  duplicate check.
- speed: the whole audit of Shuttle (target: the anomaly flag) beside one cross-validation
  of the same MLP plus cleanlab's Datalab on its out-of-fold probabilities and embeddings.

    pip install -e '.[bench]' torch==2.13.0
    python benchmarks/tables.py [--only labels|outliers|values|speed] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).parent))
from _common import prf, table

from despina.core.config import AuditConfig
from despina.data.table_inject import CELL_KINDS, COPY_KINDS, inject_table_problems
from despina.jobs.table_audit import audit_table, table_train_config


def image_segments() -> pd.DataFrame:
    from river import datasets

    return pd.DataFrame([dict(x, label=y) for x, y in datasets.ImageSegments()])


def shuttle() -> pd.DataFrame:
    from river import datasets

    return pd.DataFrame([dict(x, anomaly=int(y)) for x, y in datasets.Shuttle()])


def solar_flare() -> pd.DataFrame:
    from river import datasets

    rows = [dict(x, flare="yes" if y["c-class-flares"] else "no") for x, y in datasets.SolarFlare()]
    return pd.DataFrame(rows)


def sklearn_table(name: str, target: str) -> pd.DataFrame:
    from sklearn import datasets

    data = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = data.frame.rename(columns={"target": target})
    frame[target] = [str(data.target_names[int(v)]) for v in frame[target]]
    return frame


def flip(labels: pd.Series, rate: float, seed: int) -> tuple[pd.Series, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = sorted(labels.unique())
    flipped = rng.random(len(labels)) < rate
    noisy = labels.copy()
    for i in np.flatnonzero(flipped):
        noisy.iloc[i] = rng.choice([c for c in classes if c != labels.iloc[i]])
    return noisy, flipped


def cleanlab_oof(model: object, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from cleanlab.filter import find_label_issues
    from sklearn.model_selection import cross_val_predict

    probs = cross_val_predict(model, x, y, cv=5, method="predict_proba")
    return np.asarray(find_label_issues(y, probs), bool)


def audit(frame: pd.DataFrame, work: Path, target: str | None, **cfg: object):  # type: ignore[no-untyped-def]
    csv = work / "table.csv"
    frame.to_csv(csv, index=False)
    return audit_table(csv, work / "out", AuditConfig(**cfg), target=target)  # type: ignore[arg-type]


def labels(workers: int) -> Iterator[list[object]]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sets = [
        ("ImageSegments", image_segments(), "label", "target's table"),
        ("wine", sklearn_table("wine", "cultivar"), "cultivar", "batch rule"),
        ("breast cancer", sklearn_table("breast_cancer", "diagnosis"), "diagnosis", "no"),
    ]
    for name, frame, target, tuned in sets:
        noisy, truth = flip(frame[target], 0.1, 0)
        frame = frame.assign(**{target: noisy})
        x = frame.drop(columns=target).to_numpy(float)
        y = pd.Categorical(frame[target]).codes.astype(np.int64)
        hgb = cleanlab_oof(HistGradientBoostingClassifier(random_state=0), x, y)
        net = MLPClassifier((128, 128), max_iter=300, random_state=0)
        mlp = cleanlab_oof(make_pipeline(StandardScaler(), net), x, y)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            report = audit(frame, Path(tmp), target, workers=workers)
            seconds = time.perf_counter() - t0
        ours = report.samples["is_label_issue"].to_numpy(bool)
        p, r, f = prf(ours, truth)
        yield [name, tuned, len(frame), int(truth.sum()), prf(hgb, truth)[2],
               prf(mlp, truth)[2], f, p, r, f"{seconds:.0f}"]  # fmt: skip


def wbc() -> tuple[pd.DataFrame, np.ndarray]:
    frame = sklearn_table("breast_cancer", "diagnosis")
    benign = frame[frame["diagnosis"] == "benign"]
    malignant = frame[frame["diagnosis"] == "malignant"].sample(21, random_state=0)
    both = pd.concat([benign, malignant]).sample(frac=1, random_state=0)
    return both.drop(columns="diagnosis"), (both["diagnosis"] == "malignant").to_numpy()


def segments_grass() -> tuple[pd.DataFrame, np.ndarray]:
    frame = image_segments()
    rest = frame[frame["label"] != "grass"]
    grass = frame[frame["label"] == "grass"].sample(round(0.02 * len(rest)), random_state=0)
    both = pd.concat([rest, grass]).sample(frac=1, random_state=0)
    return both.drop(columns="label"), (both["label"] == "grass").to_numpy()


def outliers(workers: int) -> Iterator[list[object]]:
    from sklearn.ensemble import IsolationForest

    s = shuttle()
    sets = [
        ("Shuttle", s.drop(columns="anomaly"), s["anomaly"].to_numpy(bool), "yes"),
        ("WBC", *wbc(), "no"),
        ("ImageSegments, grass at 2%", *segments_grass(), "no"),
    ]
    for name, frame, truth, tuned in sets:
        x = frame.to_numpy(float)
        forest = IsolationForest(random_state=0).fit(x)
        anchor = average_precision_score(truth, -forest.score_samples(x))
        with tempfile.TemporaryDirectory() as tmp:
            report = audit(frame, Path(tmp), None, workers=workers)
        result = report.outcomes["outlier"].result
        ours = average_precision_score(truth, result.details["z"])
        p, r, _ = prf(result.flags, truth)
        yield [name, tuned, len(frame), int(truth.sum()), anchor, ours, p, r]


def clean_base(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """No row with a missing cell, no two rows with the same features."""
    features = [c for c in frame.columns if c != target]
    return frame.dropna().drop_duplicates(subset=features).reset_index(drop=True)


def values(workers: int) -> Iterator[list[object]]:
    sets = [
        ("SolarFlare", solar_flare(), "flare", "yes"),
        ("ImageSegments", image_segments(), "label", "looked at"),
        ("breast cancer", sklearn_table("breast_cancer", "diagnosis"), "diagnosis", "no"),
    ]
    for name, frame, target, tuned in sets:
        inj = inject_table_problems(clean_base(frame, target), target, 0.02, seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            report = audit(inj.frame, Path(tmp), target, workers=workers,
                           checks=("values", "duplicate"))  # fmt: skip
        s = report.samples
        found = (s["value_findings"] != "").to_numpy()
        group = s["duplicate_group"].to_numpy(dtype=float, na_value=np.nan)
        kinds = s["duplicate_kind"].to_numpy()
        row: list[object] = [name, tuned, len(inj.frame)]
        for kind in CELL_KINDS:
            rows = inj.cells.get(kind)
            row.append(float(found[rows].mean()) if rows else "n/a")
        for kind in COPY_KINDS:
            pairs = inj.copies.get(kind)
            if not pairs:
                row.append("n/a")
                continue
            same = [
                group[a] == group[b] and not np.isnan(group[a]) and kinds[b] == kind
                for a, b in pairs
            ]
            row.append(float(np.mean(same)))
        untouched = np.setdiff1d(np.arange(len(s)), sorted(inj.touched))
        flagged = found | s["is_duplicate"].to_numpy(bool)
        row.append(f"{flagged[untouched].mean():.2%}")
        with tempfile.TemporaryDirectory() as tmp:
            base = audit(clean_base(frame, target), Path(tmp), target, workers=workers,
                         checks=("values", "duplicate")).samples  # fmt: skip
        before = (base["value_findings"] != "") | base["is_duplicate"]
        kinds_before = sorted(
            {k for k in base.loc[before, "duplicate_kind"] if k}
            | {
                f.split(":")[0]
                for v in base.loc[before, "value_findings"]
                for f in v.split(";")
                if f
            }
        )
        row.append(f"{before.mean():.2%} ({', '.join(kinds_before) or '-'})")
        yield row


def speed(workers: int) -> Iterator[list[object]]:
    from cleanlab import Datalab

    from despina.data.tables import read_table
    from despina.models.mlp import MLPBuilder
    from despina.preprocessing.table import TablePipeline
    from despina.training.crossval import cross_validate

    frame = shuttle()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = audit(frame, Path(tmp), "anomaly", workers=workers)
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        tab = read_table(Path(tmp) / "table.csv", "anomaly")
        pipe = TablePipeline(tab.schema).fit(tab.frame)
        x = pipe.transform(tab.frame)
        y = np.array([int(v) for v in tab.labels or []])
        cfg = AuditConfig(workers=workers)
        layout = pipe.layout
        cv = cross_validate(x, y, 2, 5, cfg.model, table_train_config(cfg, len(y)), 0, workers,
                            build=MLPBuilder(layout.numeric, layout.cardinalities))  # fmt: skip
        lab = Datalab(data={"label": y.tolist()}, label_name="label", verbosity=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lab.find_issues(pred_probs=cv.pred_probs, features=cv.embeddings)
        theirs = time.perf_counter() - t0
    yield ["Shuttle", len(frame), f"{ours:.0f}", f"{theirs:.0f}", f"{ours / theirs:.2f}",
           report.summary["timings"].get("cross_validation", 0.0)]  # fmt: skip


PARTS = {
    "labels": (
        ["table", "tuned on", "rows", "flipped", "cleanlab+HGB F1", "cleanlab+MLP F1",
         "Despina F1", "precision", "recall", "seconds"],
        labels,
    ),
    "outliers": (
        ["table", "tuned on", "rows", "anomalies", "IsolationForest AP", "Despina AP",
         "flag precision", "flag recall"],
        outliers,
    ),
    "values": (
        ["table", "tuned on", "rows", *[f"{k} recall" for k in CELL_KINDS],
         *[f"{k} dup recall" for k in COPY_KINDS], "untouched flagged",
         "base flagged before injection"],
        values,
    ),
    "speed": (
        ["table", "rows", "Despina audit s", "CV + Datalab s", "ratio", "of which CV s"],
        speed,
    ),
}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=sorted(PARTS), action="append")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    for name in args.only or list(PARTS):
        headers, run = PARTS[name]
        t0 = time.perf_counter()
        rows = list(run(args.workers))
        print(f"\n## {name} ({time.perf_counter() - t0:.0f} s)\n")
        print(table(headers, rows))


if __name__ == "__main__":
    main()

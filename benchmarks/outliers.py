"""Outlier benchmark: a whole class mixed in at 5% with random labels, audited in place.

Each class of digits (or of Fashion-MNIST, ``--dataset fashion``: the first ``--limit``
training images) is held out in turn; 5% of the audited set are images of it, given
random labels of the other classes. Despina's outlier check and cleanlab Datalab's
``outlier`` issue manager score the same out-of-fold CNN embeddings in the same run:
AUROC of the score, precision and recall of the flags.

    pip install -e '.[bench]' torch==2.13.0
    python benchmarks/outliers.py [--dataset digits|fashion]
        [--limit 3000] [--classes 0,1,...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
from _common import prf, table, write_folder

import despina
from despina.core.config import AuditConfig, TrainConfig
from despina.data.sources import digits_arrays, fashion_mnist_arrays

FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"


def datalab_outliers(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from cleanlab import Datalab

    lab = Datalab(data={"label": labels.tolist()}, label_name="label", verbosity=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab.find_issues(features=embeddings, issue_types={"outlier": {}})
    issues = lab.get_issues("outlier")
    return issues["outlier_score"].to_numpy(), issues["is_outlier_issue"].to_numpy(bool)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="the CNN's training arithmetic (TrainConfig.precision)")  # fmt: skip
    ap.add_argument("--dataset", choices=["digits", "fashion"], default="digits")
    ap.add_argument("--limit", type=int, default=3000, help="Fashion-MNIST training images")
    args = ap.parse_args()
    train = TrainConfig(precision=args.precision)
    if args.dataset == "digits":
        images, y = digits_arrays()
    else:
        images, y = fashion_mnist_arrays(FASHION, "train")
        images, y = images[: args.limit], y[: args.limit]
    rng = np.random.default_rng(0)
    rows, sums = [], np.zeros((2, 3))
    classes = [int(c) for c in args.classes.split(",")]
    for held in classes:
        inlier = np.flatnonzero(y != held)
        n_out = round(0.05 * len(inlier) / 0.95)
        outl = rng.choice(np.flatnonzero(y == held), n_out, replace=False)
        others = [c for c in range(10) if c != held]
        labels = np.r_[y[inlier], rng.choice(others, n_out)]
        truth = np.r_[np.zeros(len(inlier), bool), np.ones(n_out, bool)]
        imgs = np.concatenate([images[inlier], images[outl]])
        cfg = AuditConfig(seed=0, workers=args.workers, checks=("outlier",), train=train)
        with tempfile.TemporaryDirectory() as tmp:
            ids = write_folder(Path(tmp) / "data", imgs, labels)
            report = despina.audit(Path(tmp) / "data", Path(tmp) / "out", cfg)
        df = report.samples.set_index("id").loc[ids]
        order = report.samples["id"].reset_index(drop=True)
        pos = {rid: i for i, rid in enumerate(order)}
        assert report.embeddings is not None
        emb = report.embeddings[[pos[i] for i in ids]]
        d_score = 1 - df["outlier_score"].to_numpy()
        d_flags = df["is_outlier"].to_numpy(bool)
        c_score, c_flags = datalab_outliers(emb, labels)
        for k, (score, flags) in enumerate([(d_score, d_flags), (1 - c_score, c_flags)]):
            auc = roc_auc_score(truth, score)
            p, r, _ = prf(flags, truth)
            sums[k] += (auc, p, r)
            rows.append([held, ["despina", "datalab"][k], auc, p, r])
        print(f"done: class {held}", file=sys.stderr)
    n = len(classes)
    rows.append(["mean", "despina", *(sums[0] / n)])
    rows.append(["mean", "datalab", *(sums[1] / n)])
    what = f"{args.dataset}, {len(y)} images"
    print(f"## Outliers ({what}; one class mixed in at 5% with random labels)")
    print()
    print(table(["held-out class", "method", "AUROC", "precision", "recall"], rows))
    # The same checks on the untouched dataset: every flag there is a false alarm.
    cfg = AuditConfig(seed=0, workers=args.workers, checks=("outlier",), train=train)
    with tempfile.TemporaryDirectory() as tmp:
        ids = write_folder(Path(tmp) / "data", images, y)
        report = despina.audit(Path(tmp) / "data", Path(tmp) / "out", cfg)
    pos = {rid: i for i, rid in enumerate(report.samples["id"])}
    assert report.embeddings is not None
    emb = report.embeddings[[pos[i] for i in ids]]
    d_flags = report.samples.set_index("id").loc[ids]["is_outlier"].to_numpy(bool)
    _, c_flags = datalab_outliers(emb, y)
    print()
    print(f"## Flagged on the untouched {args.dataset} (all false alarms)")
    print()
    print(table(["method", "flagged"], [["despina", d_flags.mean()], ["datalab", c_flags.mean()]]))


if __name__ == "__main__":
    main()

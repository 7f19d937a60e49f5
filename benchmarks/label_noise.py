"""Label-noise benchmark: Despina's audit against cleanlab baselines, in one run.

Protocol (digits): 80/20 split with a clean test set; 10% and 20% noise, symmetric and
asymmetric (0→6, 1→7, 2→3, 3→8, 4→9, 5→6, 6→5, 7→1, 8→3, 9→4); 5-fold cross-validation.
Rows per setting:
  cleanlab+LR   cleanlab find_label_issues on 5-fold LogisticRegression probabilities (raw pixels)
  cleanlab+CNN  cleanlab find_label_issues on the out-of-fold probabilities of Despina's CNN
                (first round: the plain CNN, before Despina drops suspected flips and retrains)
  despina       Despina's audit (CNN + out-of-fold neighbours, confident learning)
Also the clean-test accuracy of a CNN retrained on: the noisy labels, the labels with the
true flips removed (oracle), cleanlab+CNN's flags removed, and Despina's cleaned data.

    python benchmarks/label_noise.py [--dataset digits|fashion] [--workers 2] [--model-config F]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from cleanlab.filter import find_label_issues
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import cross_val_predict, train_test_split

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    ASYMMETRIC_DIGITS,
    ASYMMETRIC_FASHION,
    accuracy_of_saved,
    flip_labels,
    prf,
    table,
    timer,
    write_folder,
)

import despina
from despina.core.config import AuditConfig, TrainConfig, parse_share
from despina.data.decode import as_rgb
from despina.data.sources import digits_arrays, fashion_mnist_arrays
from despina.jobs.search_space import load_model_config
from despina.models.cnn import SmallCNN
from despina.preprocessing import ImagePipeline
from despina.training import train_classifier

FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"


def load(dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[int, int]]:
    if dataset == "digits":
        images, y = digits_arrays()
        tr, te = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=y)
        return images[tr], y[tr], images[te], y[te], ASYMMETRIC_DIGITS
    images, y = fashion_mnist_arrays(FASHION, "train")
    test_images, test_y = fashion_mnist_arrays(FASHION, "test")
    return images[:10000], y[:10000], test_images[:2000], test_y[:2000], ASYMMETRIC_FASHION


def retrain_accuracy(
    pipe: ImagePipeline,
    images: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray,
    test_images: np.ndarray,
    test_y: np.ndarray,
    cfg: AuditConfig,
) -> float:
    import torch

    x = pipe.transform([as_rgb(im) for im in images])
    xt = torch.from_numpy(pipe.transform([as_rgb(im) for im in test_images]))
    model: SmallCNN = train_classifier(x[keep], y[keep], 10, cfg.model, cfg.train, cfg.seed)
    with torch.no_grad():
        return float((model(xt).argmax(1).numpy() == test_y).mean())


def score_row(
    name: str,
    method: str,
    flags: np.ndarray,
    quality: np.ndarray,
    truth: np.ndarray,
    seconds: float,
) -> list[object]:
    """precision, recall, F1 of the flags and AUPRC of the label-quality ranking."""
    ap = average_precision_score(truth, -quality)
    return [name, method, *prf(flags, truth), ap, seconds]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["digits", "fashion"], default="digits")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--settings", default="symmetric:0.1,symmetric:0.2,asymmetric:0.1,asymmetric:0.2"
    )
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="the CNN's training arithmetic (TrainConfig.precision)")  # fmt: skip
    ap.add_argument("--model-config", type=Path, help="audit with this best.yaml's model")
    ap.add_argument("--round-share", help="AuditConfig.round_share: a share such as 1/3, "
                    "or none (the second round trains new models from the start)")  # fmt: skip
    args = ap.parse_args()
    images, y, test_images, test_y, mapping = load(args.dataset)
    cfg = AuditConfig(folds=5, seed=0, workers=args.workers, checks=("label",),
                      train=TrainConfig(precision=args.precision))  # fmt: skip
    if args.round_share is not None:
        cfg = cfg.model_copy(update={"round_share": parse_share(args.round_share)})
    if args.model_config is not None:
        cfg = load_model_config(args.model_config, cfg)
    rows, acc_rows = [], []
    for setting in args.settings.split(","):
        kind, rate_s = setting.split(":")
        rate = float(rate_s)
        noisy, flipped = flip_labels(y, rate, kind, 10, seed=1, mapping=mapping)
        name = f"{kind} {int(rate * 100)}%"
        # Baseline: cleanlab on cross-validated logistic regression over raw pixels.
        with timer() as t_lr:
            flat = images.reshape(len(images), -1) / 255.0
            lr_probs = cross_val_predict(
                LogisticRegression(max_iter=300), flat, noisy, cv=5, method="predict_proba"
            )
            lr_flags = find_label_issues(noisy, lr_probs)

        lr_q = lr_probs[np.arange(len(noisy)), noisy]
        rows.append(score_row(name, "cleanlab+LR", lr_flags, lr_q, flipped, t_lr[0]))
        with tempfile.TemporaryDirectory() as tmp:
            ids = write_folder(Path(tmp) / "data", images, noisy)
            with timer() as t_d:
                report = despina.audit(Path(tmp) / "data", Path(tmp) / "out", cfg)
            df = report.samples.set_index("id").loc[ids]
            assert report.pred_probs is not None
            # The plain CNN: probabilities of the first cross-validation round.
            cnn_probs = report.round_pred_probs[0]
            order = report.samples.reset_index(drop=True).set_index("id").index.get_indexer(ids)
            cnn_probs = cnn_probs[order]
            cnn_flags = find_label_issues(noisy, cnn_probs)
            cnn_q = cnn_probs[np.arange(len(noisy)), noisy]
            rows.append(score_row(name, "cleanlab+CNN", cnn_flags, cnn_q, flipped, t_d[0]))
            d_flags = df["is_label_issue"].to_numpy(bool)
            d_q = df["label_quality"].to_numpy()
            rows.append(score_row(name, "despina", d_flags, d_q, flipped, t_d[0]))
            pipe = ImagePipeline.load(Path(tmp) / "out" / "model" / "preprocessing.json")
            full = cfg.model_copy(update={"workers": 1})
            acc_noisy = retrain_accuracy(
                pipe, images, noisy, np.ones(len(y), bool), test_images, test_y, full
            )
            acc_oracle = retrain_accuracy(pipe, images, noisy, ~flipped, test_images, test_y, full)
            acc_cl = retrain_accuracy(pipe, images, noisy, ~cnn_flags, test_images, test_y, full)
            acc_d = accuracy_of_saved(Path(tmp) / "out" / "model", test_images, test_y)
            acc_rows.append([name, acc_noisy, acc_oracle, acc_cl, acc_d, acc_d - acc_oracle])
        # Each setting's rows as it ends: a Fashion-MNIST setting takes ~40 minutes.
        print(f"done: {name}: {rows[-3:]} {acc_rows[-1]}", file=sys.stderr, flush=True)
    print(f"## Label issues ({args.dataset}; {len(y)} training images, {len(test_y)} clean test)")
    print()
    print(table(["noise", "method", "precision", "recall", "F1", "AUPRC", "seconds"], rows))
    print()
    print("Clean-test accuracy of a CNN retrained on each version of the training set")
    print()
    print(
        table(
            [
                "noise",
                "noisy",
                "oracle (flips removed)",
                "cleanlab+CNN removed",
                "despina cleaned",
                "despina − oracle",
            ],
            acc_rows,
        )
    )


if __name__ == "__main__":
    main()

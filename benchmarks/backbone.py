"""A frozen backbone against full cross-validation: label issues on images the backbone did
not see, and the time each audit takes.

The backbone is the CNN of a clean audit of other images of the same dataset (its
``model.onnx``, whose ``embedding`` output is the penultimate layer). The audited images
carry 10% symmetric label noise (seed 0). Despina's full audit (5 folds, two rounds of the
CNN) beside the backbone audit (the images through the backbone once, a one-hidden-layer
head per fold), same images, same run. Fashion-MNIST (first 6,000 training images for
the backbone, the next 4,000 audited) and scikit-learn's digits (odd and even halves).

    pip install -e '.[bench]' torch==2.13.0
    python benchmarks/backbone.py [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import flip_labels, prf, table, write_folder

from despina.core.config import AuditConfig
from despina.data.sources import digits_arrays, fashion_mnist_arrays
from despina.jobs.audit import audit

FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"


def splits() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    images, y = digits_arrays()
    out = [("digits", images[::2], y[::2], images[1::2], y[1::2])]
    if FASHION.is_dir():
        f, fy = fashion_mnist_arrays(FASHION, "train")
        out.append(("Fashion-MNIST", f[:6000], fy[:6000], f[6000:10000], fy[6000:10000]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    rows = []
    for name, bx, by, ax, ay in splits():
        noisy, flipped = flip_labels(ay, 0.1, "symmetric", 10, 0, {})
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            cfg = AuditConfig(workers=args.workers)
            write_folder(work / "backbone-data", bx, by)
            audit(work / "backbone-data", work / "backbone", cfg)
            write_folder(work / "audited", ax, noisy)
            onnx = work / "backbone" / "model" / "model.onnx"
            for how, backbone in (("full audit", None), ("backbone + head", onnx)):
                t0 = time.perf_counter()
                rep = audit(work / "audited", work / how.replace(" ", "-"), cfg, backbone=backbone)
                seconds = time.perf_counter() - t0
                order = [int(Path(str(i)).stem) for i in rep.samples["id"]]
                flags = np.zeros(len(ay), bool)
                flags[order] = rep.samples["is_label_issue"].to_numpy(bool)
                p, r, f = prf(flags, flipped)
                rows.append([name, how, len(ay), f, p, r, f"{seconds:.0f}"])
    print(table(["dataset", "audit", "images", "label F1", "precision", "recall", "seconds"], rows))


if __name__ == "__main__":
    main()

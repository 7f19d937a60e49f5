"""How much faster is a compressed model, and what does it lose?

For each dataset a default CNN is trained, then ``despina compress`` makes three
variants: int8 alone, channels pruned (with a short fine-tune) alone, and both. Each is
measured against the fp32 ONNX model in the same run: held-out accuracy, and images per
second on one thread at batch 1 and batch 64 (ONNX Runtime, CPU).

Fashion-MNIST: the model trains on ``--train`` images of the training split; compression
calibrates and fine-tunes on 80% of ``--calib`` images of the *test* split and measures on
the other 20%, images neither model trained on. Digits (1,797 images in all): the model
trains on all of them, so its held-out figures are on images it has seen.

    python benchmarks/compress.py --data ../shared/data/fashion-mnist [--prune 0.5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

from despina.jobs.batch import TrainJobConfig, train_model
from despina.jobs.compress import compress


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="the Fashion-MNIST folder (skipped without it)")
    ap.add_argument("--train", type=int, default=5_000)
    ap.add_argument("--calib", type=int, default=10_000)
    ap.add_argument("--prune", type=float, default=0.5)
    args = ap.parse_args()
    sets = [("digits", "builtin:digits", "builtin:digits", 8)]
    if args.data is not None:
        folder = args.data.resolve()
        sets.append((
            "Fashion-MNIST",
            f"fashion-mnist:{folder}?split=train&limit={args.train}",
            f"fashion-mnist:{folder}?split=test&limit={args.calib}",
            28,
        ))  # fmt: skip
    variants = [("int8", True, None), (f"pruned {args.prune:.0%}", False, args.prune),
                (f"pruned {args.prune:.0%} + int8", True, args.prune)]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, train_source, data, size in sets:
            folder = Path(tmp) / name
            train_model(train_source, folder, TrainJobConfig(image_size=size, seed=0))
            for label, int8, prune in variants:
                out = folder / label.replace(" ", "-").replace("%", "").replace("+", "")
                r = compress(folder / "model", data, out, max_drop=100, int8=int8, prune=prune)
                rows.append([
                    name, label, round(r.accuracy_before, 4), round(r.accuracy_after, 4),
                    round(r.drop_points, 2), round(r.rate_before[1]), round(r.rate_after[1]),
                    round(r.rate_after[1] / r.rate_before[1], 2), round(r.rate_before[64]),
                    round(r.rate_after[64]), round(r.rate_after[64] / r.rate_before[64], 2),
                ])  # fmt: skip
                print(rows[-1], flush=True)
    print()
    print(table(["data", "variant", "fp32 acc", "acc", "lost (pts)", "fp32 img/s b1",
                 "img/s b1", "× b1", "fp32 img/s b64", "img/s b64", "× b64"], rows))  # fmt: skip


if __name__ == "__main__":
    main()

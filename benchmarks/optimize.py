"""Does ``despina optimize`` find a better model than the default, within a time budget?

Fashion-MNIST: the search runs on ``--train`` training images (its own 80/20 split of
them, labels as given) for ``--budget`` minutes with two workers; then the default model
and the chosen one are each trained on all ``--train`` images and scored on ``--test``
images of the official test split, which the search never saw. Side by side in one run.

    python benchmarks/optimize.py --data ../shared/data/fashion-mnist [--budget 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _common import accuracy_of_saved, table

from despina.core.config import ModelConfig, TrainConfig
from despina.data.sources import FASHION_MNIST_CLASSES, fashion_mnist_arrays
from despina.jobs.batch import TrainJobConfig, train_model
from despina.jobs.optimize import optimize


def trained(source: str, out: Path, cfg: TrainJobConfig) -> tuple[Path, float]:
    t0 = time.perf_counter()
    train_model(source, out, cfg)
    return out / "model", time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--train", type=int, default=10_000)
    ap.add_argument("--test", type=int, default=2_000)
    ap.add_argument("--budget", type=float, default=30.0, help="search minutes")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--config", type=Path, help="score this best.yaml instead of searching")
    args = ap.parse_args()
    source = f"fashion-mnist:{args.data.resolve()}?split=train&limit={args.train}"
    images, labels = fashion_mnist_arrays(args.data, "test")
    images, labels = images[: args.test], np.array(FASHION_MNIST_CLASSES)[labels[: args.test]]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        note, search_s = f"from {args.config}", 0.0
        if args.config is None:
            result = optimize(
                source, out / "search", trials=10_000, timeout_s=args.budget * 60,
                workers=args.workers, seed=0,
            )  # fmt: skip
            search_s = time.perf_counter() - t0
            pruned = sum(t["state"] == "PRUNED" for t in result.trials)
            note = f"{len(result.trials)} trials, {pruned} pruned"
            # The search's own figures first: a later failure must not lose them.
            print(f"search: best {result.best_accuracy:.4f}, default {result.default_accuracy}")
            print((out / "search" / "best.yaml").read_text(), flush=True)
        best = yaml.safe_load((args.config or out / "search" / "best.yaml").read_text())
        chosen = TrainJobConfig(
            image_size=best["image_size"],
            color_mode=best["color_mode"],
            model=ModelConfig(**best["model"]),
            train=TrainConfig(**best["train"]),
        )
        default_dir, default_s = trained(source, out / "default", TrainJobConfig(image_size=28))
        chosen_dir, chosen_s = trained(source, out / "chosen", chosen)
        rows = [
            ["default model", accuracy_of_saved(default_dir, images, labels), default_s, "", ""],
            [
                "despina optimize",
                accuracy_of_saved(chosen_dir, images, labels),
                chosen_s,
                search_s,
                note,
            ],
        ]
    print(f"## Model search (Fashion-MNIST, {args.train} training and {args.test} test images, "
          f"{args.budget:g} min, {args.workers} workers)\n")  # fmt: skip
    print(table(["model", "clean-test accuracy", "training s", "search s", "trials"], rows))
    print(f"\nchosen: {best}")


if __name__ == "__main__":
    main()

"""Throughput: images per second of each audit stage at 1 and 2 workers, beside the floor.

The floor is decoding and resizing every file with OpenCV in one process and nothing
else: no pipeline that reads the images can beat it. Data: scikit-learn's digits exported
as PNG files (``--size`` px), audited with the default configuration; then, at 2 workers,
the default second round (continuing the first round's models for a third of their
epochs) beside new models trained from the start (``round_share: None``).

    python benchmarks/throughput.py [--size 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

import despina
from despina.core.config import AuditConfig
from despina.data.inject import export_digits


def floor(folder: Path, size: int) -> float:
    files = sorted(folder.rglob("*.png"))
    t0 = time.perf_counter()
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    return len(files) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=16)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        export_digits(data, size=args.size)
        n = len(list(data.rglob("*.png")))
        floor_rate = floor(data, args.size)
        timings, summaries = {}, {}
        for workers, share in ((1, "default"), (2, "default"), (2, None)):
            cfg = AuditConfig(seed=0, workers=workers)
            if share is None:
                cfg = cfg.model_copy(update={"round_share": None})
            t0 = time.perf_counter()
            report = despina.audit(data, Path(tmp) / f"out{workers}{share}", cfg)
            key = workers if share == "default" else "fresh"
            timings[key] = dict(report.summary["timings"])
            timings[key]["whole audit"] = time.perf_counter() - t0
            summaries[key] = report.summary
    stages = list(timings[1])
    rows = [["decode + resize only (floor)", "", floor_rate, "", floor_rate, ""]]
    for s in stages:
        t1, t2 = timings[1][s], timings[2][s]
        rows.append(
            [s, t1, n / t1 if t1 else 0.0, t2, n / t2 if t2 else 0.0, t1 / t2 if t2 else 0.0]
        )
    print(f"## Throughput ({n} digits PNGs at {args.size}x{args.size}, default audit)")
    print()
    print(
        table(
            ["stage", "s (1 worker)", "img/s (1)", "s (2 workers)", "img/s (2)", "speed-up"], rows
        )
    )
    print()
    print("## The second round, 2 workers")
    print()
    rows = []
    for key, label in ((2, "continued (default, 1/3 of the epochs)"), ("fresh", "new models")):
        t, summary = timings[key], summaries[key]
        rows.append([label, t["cross_validation"], t["whole audit"], summary["oof_accuracy"],
                     summary["counts"]["label_issues"]])  # fmt: skip
    print(table(["second round", "cross-validation s", "whole audit s", "oof accuracy",
                 "label issues"], rows))  # fmt: skip


if __name__ == "__main__":
    main()

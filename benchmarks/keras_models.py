"""Keras models through the audit: six architectures train per fold on the torch backend and
serve through ONNX; a Keras CNN audits digits as well as the built-in CNN.

- architectures: Dense (scikit-learn's wine, a table), Conv2D (digits, images), Conv1D,
  GRU, LSTM and Conv1D+GRU (aeon's ItalyPowerDemand, series). Each is saved as a
  ``.keras`` file and passed to ``despina audit --model``; the table shows the audit's
  out-of-fold accuracy, the largest difference between ONNX Runtime's and Keras's logits
  on the export check, and the layout recorded in the model folder.
- digits: 10% symmetric label noise (seed 0); label-issue F1 of the audit with the
  built-in CNN and with a Keras CNN of the same shape (two blocks of two 3x3
  convolutions, 32 and 64 channels, batch norm, max pooling; global average pooling),
  same folds, epochs and seed; the Keras CNN with Keras's batch-norm momentum (0.99) and
  with PyTorch's (0.9).

    pip install -e '.[dev,bench]' torch==2.13.0
    python benchmarks/keras_models.py [--only architectures|digits]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import flip_labels, prf, table, write_folder

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras

from despina.core.config import AuditConfig
from despina.data.sources import digits_arrays
from despina.jobs.audit import audit
from despina.jobs.sequence_audit import audit_sequences
from despina.jobs.table_audit import audit_table

L = keras.layers


def cnn(shape: tuple[int, ...], classes: int, momentum: float = 0.99) -> Any:
    """``momentum``: Keras's batch-norm default is 0.99; PyTorch's equals 0.9 here."""
    blocks: list[Any] = [keras.Input(shape)]
    for width in (32, 64):
        for _ in range(2):
            blocks += [L.Conv2D(width, 3, padding="same", use_bias=False),
                       L.BatchNormalization(momentum=momentum), L.ReLU()]  # fmt: skip
        blocks.append(L.MaxPooling2D())
    return keras.Sequential([*blocks, L.GlobalAveragePooling2D(), L.Dropout(0.2),
                             L.Dense(classes)])  # fmt: skip


def series_models() -> dict[str, Any]:
    shape = (24, 1)
    return {
        "Conv1D": keras.Sequential([keras.Input(shape), L.Conv1D(32, 5, activation="relu"),
                                    L.Conv1D(32, 3, activation="relu"),
                                    L.GlobalAveragePooling1D(), L.Dense(2)]),
        "GRU": keras.Sequential([keras.Input(shape), L.GRU(32), L.Dense(2)]),
        "LSTM": keras.Sequential([keras.Input(shape), L.LSTM(32), L.Dense(2)]),
        "Conv1D+GRU": keras.Sequential([keras.Input(shape), L.Conv1D(32, 3, activation="relu"),
                                        L.GRU(32), L.Dense(2)]),
    }  # fmt: skip


def _row(name: str, data: str, report: Any, seconds: float) -> list[object]:
    meta = json.loads((report.out / "model" / "model.json").read_text())
    reference = json.loads((report.out / "model" / "reference.json").read_text())
    diff = f"{reference['onnx_max_difference']:.1e}"
    return [name, data, report.summary["oof_accuracy"], diff, meta["layout"], f"{seconds:.0f}"]


def architectures(workers: int) -> None:
    from aeon.datasets import load_italy_power_demand
    from sklearn.datasets import load_wine

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg = AuditConfig(workers=workers)
        load_wine(as_frame=True).frame.to_csv(work / "wine.csv", index=False)
        dense = keras.Sequential([keras.Input((13,)), L.Dense(64, activation="relu"),
                                  L.Dense(64, activation="relu"), L.Dense(3)])  # fmt: skip
        dense.save(str(work / "dense.keras"))
        t0 = time.perf_counter()
        rep = audit_table(work / "wine.csv", work / "dense-out", cfg, target="target",
                          model_file=work / "dense.keras")  # fmt: skip
        rows.append(_row("Dense", "wine (table)", rep, time.perf_counter() - t0))

        images, labels = digits_arrays()
        write_folder(work / "digits", images, labels)
        cnn((8, 8, 1), 10).save(str(work / "conv2d.keras"))
        t0 = time.perf_counter()
        rep = audit(work / "digits", work / "conv2d-out", cfg, model_file=work / "conv2d.keras")
        rows.append(_row("Conv2D", "digits (images)", rep, time.perf_counter() - t0))

        x, y = load_italy_power_demand()
        frame = pd.DataFrame(np.asarray(x[:, 0]), columns=[f"t{i}" for i in range(24)])
        frame.insert(0, "label", np.asarray(y).astype(str))
        frame.to_csv(work / "italy.csv", index=False)
        for name, model in series_models().items():
            model.save(str(work / f"{name}.keras"))
            t0 = time.perf_counter()
            rep = audit_sequences(work / "italy.csv", work / f"{name}-out", cfg, target="label",
                                  model_file=work / f"{name}.keras")  # fmt: skip
            rows.append(_row(name, "ItalyPowerDemand (series)", rep, time.perf_counter() - t0))
    print(table(["architecture", "data", "out-of-fold accuracy", "max |ONNX - Keras|",
                 "layout", "seconds"], rows))  # fmt: skip


def digits(workers: int) -> None:
    images, labels = digits_arrays()
    noisy, flipped = flip_labels(labels, 0.1, "symmetric", 10, 0, {})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_folder(work / "digits", images, noisy)
        cnn((8, 8, 1), 10).save(str(work / "cnn.keras"))
        cnn((8, 8, 1), 10, momentum=0.9).save(str(work / "cnn09.keras"))
        runs = (
            ("built-in CNN", None),
            ("Keras CNN, batch-norm momentum 0.99", work / "cnn.keras"),
            ("Keras CNN, batch-norm momentum 0.9", work / "cnn09.keras"),
        )
        for name, model_file in runs:
            t0 = time.perf_counter()
            rep = audit(work / "digits", work / f"out-{len(rows)}", AuditConfig(workers=workers),
                        model_file=model_file)  # fmt: skip
            seconds = time.perf_counter() - t0
            order = [int(Path(str(i)).stem) for i in rep.samples["id"]]
            flags = np.zeros(len(labels), bool)
            flags[order] = rep.samples["is_label_issue"].to_numpy(bool)
            p, r, f = prf(flags, flipped)
            rows.append([name, rep.summary["oof_accuracy"], f, p, r, f"{seconds:.0f}"])
    print(table(["model", "out-of-fold accuracy", "label F1", "precision", "recall",
                 "seconds"], rows))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["architectures", "digits"])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if args.only != "digits":
        architectures(args.workers)
    if args.only != "architectures":
        digits(args.workers)


if __name__ == "__main__":
    main()

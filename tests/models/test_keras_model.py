"""Keras models through the audit on the torch backend: cloned per fold, saved with their
layout, served through ONNX; a file that is not a Keras model, or one that does not fit the
data, is refused with one line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from typer.testing import CliRunner

from despina.cli.app import app
from despina.models.store import load_model

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras", reason="Keras is in the dev extra: make install")
runner = CliRunner()
L = keras.layers


def _save(model: object, path: Path) -> Path:
    model.save(str(path))  # type: ignore[attr-defined]
    return path


def _audit_wine(wine_csv: Path, model: Path, out: Path) -> dict[str, Any]:
    """The wine table audited through the CLI with ``model`` (3 folds, one round); its
    summary."""
    res = runner.invoke(app, ["audit", str(wine_csv), "--target", "target", "--model",
                              str(model), "--out", str(out), "--folds", "3",
                              "--label-rounds", "1", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    return dict(json.loads((out / "summary.json").read_text()))


@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wine") / "wine.csv"
    load_wine(as_frame=True).frame.to_csv(path, index=False)
    return path


def test_a_dense_keras_model_audits_a_table_and_its_folder_serves(
    wine_csv: Path, tmp_path: Path
) -> None:
    dense = keras.Sequential([keras.Input((13,)), L.Dense(32, activation="relu"),
                              L.Dropout(0.1), L.Dense(3, activation="softmax")])  # fmt: skip
    model = _save(dense, tmp_path / "wine.keras")
    out = tmp_path / "out"
    summary = _audit_wine(wine_csv, model, out)
    assert summary["oof_accuracy"] > 0.85
    assert summary["model"]["onnx_max_difference"] <= 1e-4
    saved = load_model(out / "model")
    assert saved.config["architecture"] == "KerasModel" and saved.config["layout"] == "as given"
    assert (out / "model" / "model.keras").is_file() and saved.model.embedding_dim == 32


def test_a_conv1d_gru_keras_model_reads_series_channels_last(tmp_path: Path) -> None:
    from aeon.datasets import load_italy_power_demand

    x, y = load_italy_power_demand()
    frame = pd.DataFrame(np.asarray(x[:150, 0]), columns=[f"t{i}" for i in range(24)])
    frame.insert(0, "label", np.asarray(y[:150]).astype(str))
    frame.to_csv(tmp_path / "italy.csv", index=False)
    hybrid = keras.Sequential([keras.Input((24, 1)), L.Conv1D(16, 3, activation="relu"),
                               L.GRU(16), L.Dense(2)])  # fmt: skip
    model = _save(hybrid, tmp_path / "hybrid.keras")
    out = tmp_path / "out"
    res = runner.invoke(app, ["audit", str(tmp_path / "italy.csv"), "--kind", "sequence",
                              "--target", "label", "--model", str(model), "--out", str(out),
                              "--folds", "3", "--label-rounds", "1", "--checks", "label",
                              "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["oof_accuracy"] > 0.8 and summary["model"]["onnx_max_difference"] <= 1e-4
    assert load_model(out / "model").config["layout"] == "NLC"


TF_SAVE = """
import os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
L = keras.layers
model = keras.Sequential([keras.Input((13,)), L.Dense(32, activation="relu"), L.Dense(3)])
model.save(sys.argv[1])
"""


def test_a_keras_file_saved_under_tensorflow_trains_on_the_torch_backend(
    wine_csv: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    path = tmp_path / "tf.keras"
    done = subprocess.run([sys.executable, "-c", TF_SAVE, str(path)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "out"
    summary = _audit_wine(wine_csv, path, out)
    assert summary["oof_accuracy"] > 0.85
    assert load_model(out / "model").config["architecture"] == "KerasModel"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "cannot load"),
        (lambda p: _save(keras.Sequential([keras.Input((13,)), L.Dense(5)]), p), "5 units"),
        (
            lambda p: _save(keras.Sequential([keras.Input((7,)), L.Dense(8), L.Dense(3)]), p),
            "takes inputs of shape (7,)",
        ),
    ],
    ids=["corrupt", "wrong classes", "wrong input"],
)
def test_a_keras_file_that_cannot_be_used_is_refused(
    wine_csv: Path,
    tmp_path: Path,
    make,
    match: str,  # type: ignore[no-untyped-def]
) -> None:
    model = tmp_path / "m.keras"
    make(model)
    res = runner.invoke(app, ["audit", str(wine_csv), "--target", "target", "--model",
                              str(model), "--out", str(tmp_path / "o"), "-q"])  # fmt: skip
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and match in text, text

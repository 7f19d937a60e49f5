"""A frozen ONNX model audits without training: its probabilities feed cleanlab as they are;
one whose shapes do not fit the data is refused naming both. A TensorFlow SavedModel is
converted with tf2onnx and gives TensorFlow's outputs, channels last."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from typer.testing import CliRunner

from despina.cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("frozen")
    frame = load_wine(as_frame=True).frame
    frame.to_csv(tmp / "clean.csv", index=False)
    args = ["--target", "target", "--folds", "3", "--label-rounds", "1", "--checks", "label", "-q"]
    res = runner.invoke(
        app, ["audit", str(tmp / "clean.csv"), "--out", str(tmp / "clean-out"), *args]
    )
    assert res.exit_code == 0, res.output
    return tmp / "clean-out" / "model" / "model.onnx", frame


def test_a_frozen_model_finds_flips_without_training(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    onnx, frame = trained
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(frame), 12, replace=False)
    noisy = frame.copy()
    noisy.loc[flipped, "target"] = (noisy.loc[flipped, "target"] + 1) % 3
    noisy.to_csv(tmp_path / "noisy.csv", index=False)
    out = tmp_path / "out"
    res = runner.invoke(app, ["audit", str(tmp_path / "noisy.csv"), "--target", "target",
                              "--model", str(onnx), "--out", str(out), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["frozen"] == str(onnx) and "cross_validation" in summary["timings"]
    assert not (out / "model").exists()  # nothing trained
    flags = pd.read_csv(out / "samples.csv")["is_label_issue"].to_numpy(bool)
    assert flags[flipped].mean() >= 0.8 and flags.sum() <= 2 * len(flipped)


def test_a_frozen_model_of_another_shape_is_refused(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    onnx, frame = trained
    frame.drop(columns=["alcohol"]).to_csv(tmp_path / "fewer.csv", index=False)
    res = runner.invoke(app, ["audit", str(tmp_path / "fewer.csv"), "--target", "target",
                              "--model", str(onnx), "--out", str(tmp_path / "o")])  # fmt: skip
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "takes inputs of shape [13]" in text and "[12]" in text, text


TF_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras
folder = sys.argv[1]
x = np.load(folder + "/x.npy").transpose(0, 2, 1)  # channels last, as Keras keeps them
y = np.load(folder + "/y.npy")
keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input(x.shape[1:]),
    keras.layers.Conv1D(16, 5, activation="relu", padding="same"),
    keras.layers.GlobalAveragePooling1D(),
    keras.layers.Dense(16, activation="relu"),
    keras.layers.Dense(int(y.max()) + 1, activation="softmax"),
])
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(x, y, epochs=40, batch_size=32, verbose=0)
model.export(folder + "/saved")
np.save(folder + "/expected.npy", model.predict(x, verbose=0))
"""


def test_a_tensorflow_saved_model_is_converted_and_audits_series(tmp_path: Path) -> None:
    import subprocess
    import sys

    from aeon.datasets import load_italy_power_demand

    from despina.data.sequences import read_sequences
    from despina.models.frozen import frozen_outputs
    from despina.preprocessing.sequence import SequencePipeline

    x, y = load_italy_power_demand()
    labels = np.asarray(y).astype(int)
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(labels), 40, replace=False)
    noisy = labels.copy()
    noisy[flipped] = 3 - noisy[flipped]  # classes 1 and 2
    frame = pd.DataFrame(np.asarray(x)[:, 0], columns=[f"t{i}" for i in range(24)])
    frame.insert(0, "label", noisy)
    frame.to_csv(tmp_path / "series.csv", index=False)
    seq = read_sequences(tmp_path / "series.csv", "label")
    xs = SequencePipeline().fit(seq.x).transform(seq.x)
    np.save(tmp_path / "x.npy", xs)
    np.save(tmp_path / "y.npy", labels - 1)  # trained on the true labels, as a vendor's
    done = subprocess.run([sys.executable, "-c", TF_SCRIPT, str(tmp_path)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]

    probs, _ = frozen_outputs(tmp_path / "saved", xs, 2)  # channels first in, NLC model
    np.testing.assert_allclose(probs, np.load(tmp_path / "expected.npy"), atol=1e-4)

    out = tmp_path / "out"
    res = runner.invoke(app, ["audit", str(tmp_path / "series.csv"), "--kind", "sequence",
                              "--target", "label", "--model", str(tmp_path / "saved"),
                              "--checks", "label", "--out", str(out), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["frozen"] == str(tmp_path / "saved")
    flags = pd.read_csv(out / "samples.csv")["is_label_issue"].to_numpy(bool)
    assert flags[flipped].mean() >= 0.7 and flags.sum() <= 3 * len(flipped)


def test_a_folder_that_is_not_a_saved_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    res = runner.invoke(app, ["audit", str(tmp_path / "t.csv"), "--model", str(tmp_path / "dir"),
                              "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code == 2 and "SavedModel folder" in " ".join(res.output.split())

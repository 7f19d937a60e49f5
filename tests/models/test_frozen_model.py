"""A frozen ONNX model audits without training: its probabilities feed cleanlab as they are;
one whose shapes do not fit the data is refused naming both."""

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
    args = ["--target", "target", "--folds", "3", "--checks", "label", "-q"]
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

"""A user's own PyTorch model through the audit: trained per fold, saved, reloaded; a model
that does not fit the data is refused before training, naming both shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_wine
from typer.testing import CliRunner

from despina.cli.app import app
from despina.models.store import load_model

runner = CliRunner()

GOOD = """
import torch.nn as nn

def build(num_features, num_classes):
    return nn.Sequential(nn.Linear(num_features, 32), nn.ReLU(), nn.Linear(32, num_classes))
"""


@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = load_wine(as_frame=True).frame
    path = tmp_path_factory.mktemp("wine") / "wine.csv"
    frame.to_csv(path, index=False)
    return path


def _audit(csv: Path, model: Path, out: Path) -> object:
    args = ["audit", str(csv), "--target", "target", "--model", str(model), "--out", str(out)]
    return runner.invoke(app, [*args, "--folds", "3", "--checks", "label,outlier", "-q"])


def test_a_build_file_trains_per_fold_and_its_folder_reloads(
    wine_csv: Path, tmp_path: Path
) -> None:
    model = tmp_path / "mine.py"
    model.write_text(GOOD)
    res = _audit(wine_csv, model, tmp_path / "out")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["oof_accuracy"] > 0.85
    saved = load_model(tmp_path / "out" / "model")
    assert saved.config["architecture"] == "UserModel"
    assert (tmp_path / "out" / "model" / "model_def.py").read_text() == GOOD
    model.unlink()  # the folder no longer needs the original file
    assert load_model(tmp_path / "out" / "model").model.embedding_dim == 32
    samples = pd.read_csv(tmp_path / "out" / "samples.csv")
    assert samples["label_quality"].notna().all()


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (
            "def build(n, k):\n    raise ValueError('no GPU here')\n",
            "raised ValueError: no GPU here",
        ),
        (GOOD.replace("num_classes))", "5))"), "returns shape (2, 5)"),
        (
            GOOD.replace("nn.Linear(num_features, 32)", "nn.Linear(10, 32)"),
            "inputs of shape (2, 13)",
        ),
        ("import torch.nn as nn\ndef build(n, k):\n    return nn.Identity()\n", "no nn.Linear"),
        ("x = 1\n", "has no build("),
    ],
    ids=["build raises", "wrong classes", "wrong input", "no linear", "no build"],
)
def test_a_model_that_does_not_fit_is_refused_before_training(
    wine_csv: Path, tmp_path: Path, source: str, match: str
) -> None:
    model = tmp_path / "bad.py"
    model.write_text(source)
    res = _audit(wine_csv, model, tmp_path / "out")
    out = " ".join(res.output.split())  # type: ignore[attr-defined]
    assert res.exit_code == 2 and match in out, out  # type: ignore[attr-defined]
    assert not (tmp_path / "out" / "samples.csv").exists()

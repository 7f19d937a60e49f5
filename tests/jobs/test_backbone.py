"""A frozen backbone: each image goes through it once, at its own input size, and a small
head is trained per fold on the embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from despina.cli.app import app
from despina.data.sources import digits_arrays

runner = CliRunner()


def write_digits(folder: Path, images: np.ndarray, labels: np.ndarray) -> list[str]:
    """PNGs in class subfolders; the ids (relative paths) in order."""
    import cv2

    ids = []
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        (folder / str(y)).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / str(y) / f"{i:04d}.png"), img)
        ids.append(f"{y}/{i:04d}.png")
    return ids


def test_a_backbone_from_other_images_audits_these_as_onnx_or_pytorch(tmp_path: Path) -> None:
    images, labels = digits_arrays()
    first, second = np.arange(0, len(images), 2), np.arange(1, len(images), 2)
    write_digits(tmp_path / "first", images[first], labels[first])
    quick = ["--folds", "2", "--epochs", "6", "--label-rounds", "1", "-q"]
    res = runner.invoke(
        app, ["audit", str(tmp_path / "first"), "--out", str(tmp_path / "bb"), *quick]
    )
    assert res.exit_code == 0, res.output
    rng = np.random.default_rng(0)
    noisy = labels[second].copy()
    flipped = rng.choice(len(second), 40, replace=False)
    noisy[flipped] = (noisy[flipped] + rng.integers(1, 10, len(flipped))) % 10
    ids = write_digits(tmp_path / "second", images[second], noisy)
    backbone = tmp_path / "bb" / "model" / "model.onnx"
    out = tmp_path / "out"
    one = ["--label-rounds", "1", "-q"]  # one round: the backbone is what is tested
    res = runner.invoke(app, ["audit", str(tmp_path / "second"), "--backbone", str(backbone),
                              "--out", str(out), *one])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backbone"] == str(backbone) and summary["image_size"] == 8
    assert "backbone" in summary["timings"] and not (out / "model").exists()
    import pandas as pd

    samples = pd.read_csv(out / "samples.csv").set_index("id")
    flags = samples.loc[[ids[i] for i in range(len(ids))], "is_label_issue"].to_numpy(bool)
    assert flags[flipped].mean() >= 0.8 and flags.sum() <= 2 * len(flipped)

    # The same network written in PyTorch: exported once, then run as the ONNX one is.
    torch_file = tmp_path / "backbone.py"
    torch_file.write_text(TORCH_BACKBONE.format(folder=tmp_path / "bb" / "model"))
    res = runner.invoke(app, ["audit", str(tmp_path / "second"), "--backbone", str(torch_file),
                              "--out", str(tmp_path / "out-torch"), *one])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out-torch" / "backbone.onnx").is_file()
    again = pd.read_csv(tmp_path / "out-torch" / "samples.csv").set_index("id")
    flags_torch = again.loc[ids, "is_label_issue"].to_numpy(bool)
    assert flags_torch[flipped].mean() >= 0.8 and flags_torch.sum() <= 2 * len(flipped)

    torch_file.write_text("def build():\n    return None\n")
    res = runner.invoke(app, ["audit", str(tmp_path / "second"), "--backbone", str(torch_file),
                              "--out", str(tmp_path / "bad"), "-q"])  # fmt: skip
    assert res.exit_code == 2 and "INPUT_SHAPE" in res.output


TORCH_BACKBONE = """
import torch
from pathlib import Path
from despina.models.store import load_model

INPUT_SHAPE = (1, 8, 8)


class Embed(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.embed(x)


def build():
    return Embed(load_model(Path("{folder}")).model)
"""


def test_a_backbone_is_for_images(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("a,b\n1,2\n")
    args = ["--backbone", str(csv), "--out", str(tmp_path / "o")]
    res = runner.invoke(app, ["audit", str(csv), *args])
    assert res.exit_code == 2 and "--backbone is for images" in res.output

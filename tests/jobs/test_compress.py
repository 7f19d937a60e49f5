"""``despina compress``: int8 quantization of a served model, measured against the fp32
model on held-out images, refused past --max-drop with nothing written, and served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from despina.cli.app import app
from despina.core.config import ModelConfig, TrainConfig
from despina.jobs.batch import TrainJobConfig, train_model

runner = CliRunner()


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits CNN trained for two epochs in fp32: int8 costs it a few held-out images."""
    out = tmp_path_factory.mktemp("small")
    train = TrainConfig(epochs=2, precision="fp32")
    cfg = TrainJobConfig(image_size=8, model=ModelConfig(width=8, depth=2), train=train, seed=0)
    train_model("builtin:digits", out, cfg)
    return out / "model"


def test_a_compressed_model_is_int8_measured_and_served(small_model: Path, tmp_path: Path) -> None:
    from despina.data.sources import digits_arrays
    from despina.serving.deployment import Deployment
    from tests.serving.fixtures import png

    out = tmp_path / "int8"
    res = runner.invoke(app, ["compress", str(small_model), "--data", "builtin:digits",
                              "--out", str(out), "--max-drop", "5"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "fp32" in res.output and "int8" in res.output and "lost" in res.output
    meta = json.loads((out / "model.json").read_text())
    before, after = meta["compression"]["held_out_accuracy"]
    assert before > 0.7 and before - after <= 0.05
    assert (out / "model.onnx").stat().st_size < (small_model / "model.onnx").stat().st_size
    import asyncio

    images, labels = digits_arrays()
    dep = Deployment("d", out)

    async def labels_of(n: int) -> list[str]:
        answers = [await dep.predict(png(images[i]), f"{i}.png") for i in range(n)]
        return [a["objects"][0]["label"] for a in answers]

    try:
        got = asyncio.run(labels_of(40))
    finally:
        dep.close()
    right = sum(g == str(y) for g, y in zip(got, labels[:40], strict=True))
    assert right >= 28  # the int8 model, served, on images it learned from


def test_past_max_drop_nothing_is_written(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8"
    res = runner.invoke(app, ["compress", str(small_model), "--data", "builtin:digits",
                              "--out", str(out), "--max-drop", "0.25"])  # fmt: skip
    assert res.exit_code != 0
    line = res.stderr.strip().splitlines()
    assert len(line) == 1 and "lost" in line[0] and "nothing was written" in line[0], res.stderr
    assert not out.exists() and not list(tmp_path.glob(".compress-*"))


def test_a_pruned_model_has_fewer_channels_and_serves(tmp_path: Path) -> None:
    from despina.data.sources import digits_arrays
    from despina.serving.deployment import Deployment
    from tests.serving.fixtures import png

    trained = tmp_path / "trained"
    cfg = TrainJobConfig(
        image_size=8, model=ModelConfig(width=16, depth=2), train=TrainConfig(epochs=4), seed=0
    )
    train_model("builtin:digits", trained, cfg)
    out = tmp_path / "pruned"
    res = runner.invoke(app, ["compress", str(trained / "model"), "--data", "builtin:digits",
                              "--out", str(out), "--prune", "0.5", "--max-drop", "10"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "pruned 50% + int8" in res.output
    meta = json.loads((out / "model.json").read_text())
    before, after = meta["compression"]["pruning"]["parameters"]
    assert after < 0.4 * before  # half the channels: about a quarter of the weights
    assert "int8" in meta["compression"] and not (out / "weights.safetensors").exists()
    held_before, held_after = meta["compression"]["held_out_accuracy"]
    assert held_after >= held_before - 0.10
    import asyncio

    images, labels = digits_arrays()
    dep = Deployment("d", out)

    async def labels_of(n: int) -> list[str]:
        return [(await dep.predict(png(images[i]), f"{i}.png"))["objects"][0]["label"]
                for i in range(n)]  # fmt: skip

    try:
        got = asyncio.run(labels_of(40))
    finally:
        dep.close()
    assert sum(g == str(y) for g, y in zip(got, labels[:40], strict=True)) >= 28
    # A pruned folder has no weights to prune again; a bad fraction is refused.
    again = runner.invoke(app, ["compress", str(out), "--data", "builtin:digits", "--out",
                                str(tmp_path / "again"), "--prune", "0.5"])  # fmt: skip
    assert again.exit_code != 0 and "prune the original" in again.stderr
    bad = runner.invoke(app, ["compress", str(trained / "model"), "--data", "builtin:digits",
                              "--out", str(tmp_path / "bad"), "--prune", "1.5"])  # fmt: skip
    assert bad.exit_code != 0 and "fraction of channels" in bad.stderr
    assert not (tmp_path / "again").exists() and not (tmp_path / "bad").exists()

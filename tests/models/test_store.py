from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from despina.core.errors import ModelError, NotFoundError
from despina.models import SmallCNN, load_model, save_model


def test_save_and_load_give_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SmallCNN(1, 4, width=8, depth=2).eval()
    save_model(model, tmp_path, ["a", "b", "c", "d"], {"in_channels": 1, "width": 8, "depth": 2})
    saved = load_model(tmp_path)
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), saved.model(x))
    assert saved.class_names == ["a", "b", "c", "d"]
    assert not any(p.suffix in {".pt", ".pkl", ".pth"} for p in tmp_path.iterdir())


def test_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_model(tmp_path)


def test_mismatched_config_is_a_model_error(tmp_path: Path) -> None:
    save_model(
        SmallCNN(1, 2, 8, 1), tmp_path, ["a", "b"], {"in_channels": 1, "width": 8, "depth": 1}
    )
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["width"] = 16
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError):
        load_model(tmp_path)

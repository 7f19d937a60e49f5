"""Save and load a model as safetensors weights plus JSON: nothing is unpickled on load."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load as load_weights
from safetensors.torch import save_file

from despina.core.artifacts import FORMAT_VERSION, MODEL_CONFIG, WEIGHTS
from despina.core.errors import ModelError, NotFoundError
from despina.models.cnn import SmallCNN
from despina.security.envelope import read_artifact


@dataclass(frozen=True)
class SavedModel:
    """A loaded model with the class names it predicts and its JSON config."""

    model: SmallCNN
    class_names: list[str]
    config: dict[str, Any]


def save_model(
    model: SmallCNN, folder: Path, class_names: list[str], config: dict[str, Any]
) -> None:
    """Write ``weights.safetensors`` and ``model.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    meta = {
        "architecture": "SmallCNN",
        "format_version": FORMAT_VERSION,
        "class_names": class_names,
        **config,
    }
    (folder / MODEL_CONFIG).write_text(json.dumps(meta, indent=2))


def load_model(folder: Path) -> SavedModel:
    """Rebuild the CNN from ``model.json`` and load its weights (eval mode)."""
    cfg_path, w_path = folder / MODEL_CONFIG, folder / WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise NotFoundError(f"{folder} is not a Despina model folder ({MODEL_CONFIG}, {WEIGHTS})")
    try:
        meta = json.loads(read_artifact(cfg_path))
        model = SmallCNN.from_config(
            int(meta["in_channels"]), len(meta["class_names"]), {"dropout": 0.0, **meta}
        )
        model.load_state_dict(load_weights(read_artifact(w_path)))
    except (KeyError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot load the model in {folder}: {exc}") from exc
    model.eval()
    return SavedModel(model, list(meta["class_names"]), meta)

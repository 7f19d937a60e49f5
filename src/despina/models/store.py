"""Save and load a model as safetensors weights plus JSON: nothing is unpickled on load."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load as load_weights
from safetensors.torch import save_file

from despina.core.artifacts import FORMAT_VERSION, MODEL_CONFIG, WEIGHTS
from despina.core.errors import ModelError, NotFoundError
from despina.models.base import EmbeddingClassifier
from despina.models.cnn import SmallCNN
from despina.models.keras_model import KERAS_FILE, KerasModel, load_saved_keras
from despina.models.mlp import TabularMLP
from despina.models.sequence import SequenceBuilder
from despina.models.user import USER_FILE, UserBuilder, UserModel
from despina.security.envelope import read_artifact


@dataclass(frozen=True)
class SavedModel:
    """A loaded model with the class names it predicts and its JSON config."""

    model: EmbeddingClassifier
    class_names: list[str]
    config: dict[str, Any]


def save_model(
    model: EmbeddingClassifier, folder: Path, class_names: list[str], config: dict[str, Any]
) -> None:
    """Write ``weights.safetensors`` and ``model.json`` into ``folder`` (and a user's model
    file beside them, so the folder rebuilds it on its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model, UserModel) and model.source is not None:
        shutil.copyfile(model.source, folder / USER_FILE)
        config = {**config, "user_file": USER_FILE, "input_shape": list(model.input_shape)}
    if isinstance(model, KerasModel):
        # Keras saves its own weights; its torch state repeats them (model and features).
        model.model.save(str(folder / KERAS_FILE))
        config = {**config, "keras_file": KERAS_FILE, "layout": model.layout,
                  "permute": None if model.permute is None else list(model.permute)}  # fmt: skip
    else:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(folder / WEIGHTS))
    meta = {
        "architecture": type(model).__name__,
        "format_version": FORMAT_VERSION,
        "class_names": class_names,
        **config,
    }
    (folder / MODEL_CONFIG).write_text(json.dumps(meta, indent=2))


def _rebuild(meta: dict[str, Any], folder: Path) -> EmbeddingClassifier:
    """The untrained module ``model.json`` describes (CNNs saved before tables existed
    name no other architecture)."""
    num_classes = len(meta["class_names"])
    if meta.get("architecture") == "UserModel":
        shape = tuple(int(v) for v in meta["input_shape"])
        return UserBuilder(str(folder / meta["user_file"]), shape)(num_classes)
    if meta.get("kind") == "sequence":
        return SequenceBuilder(meta["family"], int(meta["channels"]), int(meta["width"]))(
            num_classes
        )
    if meta.get("architecture", "SmallCNN") == "TabularMLP":
        return TabularMLP(
            int(meta["numeric"]),
            tuple(int(c) for c in meta["cardinalities"]),
            num_classes,
            int(meta["width"]),
            int(meta["depth"]),
            0.0,
            str(meta["activation"]),
        )
    return SmallCNN.from_config(int(meta["in_channels"]), num_classes, {"dropout": 0.0, **meta})


def load_model(folder: Path) -> SavedModel:
    """Rebuild the model from ``model.json`` and load its weights (eval mode)."""
    cfg_path, w_path = folder / MODEL_CONFIG, folder / WEIGHTS
    if not cfg_path.is_file():
        raise NotFoundError(f"{folder} is not a Despina model folder (no {MODEL_CONFIG})")
    try:
        meta = json.loads(read_artifact(cfg_path))
        if meta.get("architecture") == "KerasModel":
            model: EmbeddingClassifier = load_saved_keras(folder, meta.get("permute"))
            model.eval()
            return SavedModel(model, list(meta["class_names"]), meta)
        if not w_path.is_file():
            raise NotFoundError(f"{folder} is not a Despina model folder (no {WEIGHTS})")
        model = _rebuild(meta, folder)
        model.load_state_dict(load_weights(read_artifact(w_path)))
    except (KeyError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot load the model in {folder}: {exc}") from exc
    model.eval()
    return SavedModel(model, list(meta["class_names"]), meta)

"""A user's Keras model (a ``.keras`` file), trained and served inside Despina's one runtime.

Keras 3 runs on its PyTorch backend here: its models are ``torch.nn.Module``s, so the
trainer, cross-validation and the ONNX export treat them like Despina's own. Each fold
trains ``keras.models.clone_model`` of the file's model (fresh weights); the embedding is
the output of the layer before the last, which must be a ``Dense`` layer with one unit per
class (its activation, softmax or none, is left out: the trainer works on logits). Keras
takes channels last: the input is transposed from Despina's (N, C, H, W) or (N, C, L)
when the model's input shape says so, and the layout is recorded in the model folder,
never guessed at serving. A ``.keras`` file is backend-independent, so one saved under
TensorFlow loads unchanged.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from despina.core.errors import ConfigError, NotFoundError
from despina.models.base import EmbeddingClassifier

KERAS_FILE = "model.keras"


def _keras() -> Any:
    backend = os.environ.setdefault("KERAS_BACKEND", "torch")
    if backend != "torch" or ("keras" in sys.modules and _backend() != "torch"):
        raise ConfigError(
            f"Keras runs here on its torch backend, but KERAS_BACKEND is {backend!r}: "
            "unset it or set it to torch"
        )
    try:
        import keras
    except ImportError:
        raise ConfigError("Keras is not installed: pip install 'despina[keras]'") from None
    return keras


def _backend() -> str:
    import keras

    return str(keras.backend.backend())


@lru_cache(maxsize=4)
def load_keras(path: str) -> Any:
    """The model in a ``.keras`` file; a ConfigError says what is wrong with the file."""
    keras = _keras()
    if not Path(path).is_file():
        raise NotFoundError(f"Keras model not found: {path}")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"cannot load {path} as a Keras 3 model ({first}); save it again with "
            "model.save('model.keras') from Keras 3"
        ) from None


class _DenseLogits(nn.Module):
    """The final Dense layer without its activation: logits from the embedding."""

    def __init__(self, layer: Any) -> None:
        super().__init__()
        self._dense: list[Any] = [layer]  # not a child: its weights are the Keras model's

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        layer = self._dense[0]
        out: torch.Tensor = e @ layer.kernel + layer.bias
        return out


class KerasModel(EmbeddingClassifier):
    """A Keras model behind Despina's contract; ``permute`` turns Despina's channels-first
    batches into the channels-last ones the model takes."""

    def __init__(self, model: Any, permute: tuple[int, ...] | None, source: str = "") -> None:
        super().__init__()
        keras = _keras()
        self.model = model
        self.source, self.permute = source, permute
        last = model.layers[-1]
        if not isinstance(last, keras.layers.Dense) or len(model.layers) < 2:
            raise ConfigError(
                "the Keras model's last layer must be a Dense layer with one unit per class "
                f"(it is {type(last).__name__}); Despina takes the layer before it as the "
                "embedding"
            )
        self.features = keras.Model(model.inputs, model.layers[-2].output)
        object.__setattr__(self, "head", _DenseLogits(last))
        self.embedding_dim = int(last.kernel.shape[0])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.permute is not None:
            x = x.permute(*self.permute)
        out: torch.Tensor = self.features(x, training=self.training)
        return out.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.embed(x))
        return out

    @property
    def layout(self) -> str:
        names: dict[tuple[int, ...], str] = {(0, 2, 3, 1): "NHWC", (0, 2, 1): "NLC"}
        return "as given" if self.permute is None else names.get(self.permute, "as given")


def _permutation(model_shape: tuple[int, ...], shape: tuple[int, ...], path: str) -> Any:
    if model_shape == shape:
        return None
    if len(shape) == 3 and model_shape == (shape[1], shape[2], shape[0]):
        return (0, 2, 3, 1)
    if len(shape) == 2 and model_shape == (shape[1], shape[0]):
        return (0, 2, 1)
    raise ConfigError(
        f"the Keras model in {path} takes inputs of shape {model_shape} but the data gives "
        f"{shape} (channels first) per sample; build it for this data's shape"
    )


@dataclass(frozen=True)
class KerasBuilder:
    """A picklable recipe: the file and the data's per-sample shape (channels first)."""

    path: str
    input_shape: tuple[int, ...]

    def __call__(self, num_classes: int) -> EmbeddingClassifier:
        keras = _keras()
        base = load_keras(self.path)
        units = int(base.layers[-1].units) if hasattr(base.layers[-1], "units") else None
        if units is not None and units != num_classes:
            raise ConfigError(
                f"the Keras model in {self.path} ends in {units} units; the data has "
                f"{num_classes} classes"
            )
        model_shape = tuple(int(d) for d in base.inputs[0].shape[1:])
        permute = _permutation(model_shape, self.input_shape, self.path)
        fresh = keras.models.clone_model(base)
        return KerasModel(fresh, permute, self.path)


def load_saved_keras(folder: Path, permute: list[int] | None) -> KerasModel:
    """A trained Keras model saved in a model folder (sealed or not), wrapped as it was
    trained."""
    import tempfile

    from despina.security.envelope import read_artifact

    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / KERAS_FILE
        plain.write_bytes(read_artifact(folder / KERAS_FILE))
        model = _keras().saving.load_model(str(plain), compile=False)
    return KerasModel(model, None if permute is None else tuple(permute), str(folder / KERAS_FILE))

"""A user's own PyTorch model: a Python file whose ``build(input_shape, num_classes)``
returns a ``torch.nn.Module`` that maps a batch to class logits.

The module is wrapped so the trainer and the checks see what they see of Despina's own
models: ``embed`` is the input of the module's last ``nn.Linear`` (the penultimate
layer), ``head`` that layer. ``build`` runs again for every fold and round, so no
weights leak between folds. The file runs with the rights of whoever starts the audit:
pass only files you trust.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from despina.core.errors import ConfigError, NotFoundError
from despina.models.base import EmbeddingClassifier, ModelBuilder

if TYPE_CHECKING:
    from despina.models.keras_model import KerasBuilder

#: The name a user's model file is copied under in a saved model folder.
USER_FILE = "model_def.py"


def load_user_file(path: Path, what: str) -> ModuleType:
    """Import a user's Python file, which must define ``build`` (``what`` describes it)."""
    if not path.is_file():
        raise NotFoundError(f"model file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"despina_user_model_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path} is not a Python file Despina can load (give a .py file)")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"{path} failed while loading: {type(exc).__name__}: {exc}") from None
    if not callable(getattr(module, "build", None)):
        raise ConfigError(f"{path} has no {what}")
    return module


class UserModel(EmbeddingClassifier):
    """A user's module seen through Despina's contract (``embed`` then ``head``)."""

    def __init__(
        self, module: nn.Module, source: str | None = None, input_shape: tuple[int, ...] = ()
    ) -> None:
        super().__init__()
        self.module = module
        self.source, self.input_shape = source, input_shape
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError(
                "the model has no nn.Linear layer: Despina takes the input of the last one "
                "as the embedding and the layer itself as the classifier head"
            )
        # Not registered as a child: its weights are the user's module's, saved once.
        object.__setattr__(self, "head", linears[-1])
        self.embedding_dim = self.head.in_features
        self._seen: list[torch.Tensor] = []
        self.head.register_forward_hook(lambda _m, inputs, _o: self._seen.append(inputs[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(x)
        self._seen.clear()
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self._seen.clear()
        self.module(x)
        if not self._seen:
            raise ConfigError("the model's last nn.Linear was not used in its forward pass")
        emb = self._seen[-1].flatten(1)
        self._seen.clear()
        return emb


@dataclass(frozen=True)
class UserBuilder:
    """A picklable recipe: the file's path and the input shape (folds run in other
    processes, which load the file again)."""

    path: str
    input_shape: tuple[int, ...]

    def __call__(self, num_classes: int) -> EmbeddingClassifier:
        module = load_user_file(
            Path(self.path), "build(input_shape, num_classes) function returning a torch module"
        )
        shape: Any = self.input_shape[0] if len(self.input_shape) == 1 else self.input_shape
        try:
            built = module.build(shape, num_classes)
        except Exception as exc:
            raise ConfigError(
                f"build({shape}, {num_classes}) in {self.path} raised {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(built, nn.Module):
            raise ConfigError(
                f"build() in {self.path} returned {type(built).__name__}, not a torch.nn.Module"
            )
        return UserModel(built, self.path, self.input_shape)


def check_fits(build: UserBuilder | KerasBuilder, x: np.ndarray, num_classes: int) -> None:
    """Refuse, before any training, a model whose input or output does not fit the data,
    naming both shapes."""
    model = build(num_classes)
    model.eval()
    probe = torch.from_numpy(np.ascontiguousarray(x[:2], dtype=np.float32))
    try:
        with torch.no_grad():
            out = model(probe)
            emb = model.embed(probe)
    except Exception as exc:
        raise ConfigError(
            f"the model in {build.path} does not take this data: inputs of shape "
            f"{tuple(probe.shape)} (batch first) gave {type(exc).__name__}: {exc}"
        ) from None
    if tuple(out.shape) != (len(probe), num_classes):
        raise ConfigError(
            f"the model in {build.path} returns shape {tuple(out.shape)} for a batch of "
            f"{len(probe)}; the data has {num_classes} classes, so it must return "
            f"({len(probe)}, {num_classes})"
        )
    if emb.shape[0] != len(probe):
        raise ConfigError(f"the model in {build.path} mixes the batch in its last layer's input")


def user_builder(
    model_file: str | Path | None, x: np.ndarray, num_classes: int
) -> ModelBuilder | None:
    """The builder for ``model_file`` (a ``build()`` file or a ``.keras`` model; None
    without one), checked against the data ``x`` before any training."""
    if model_file is None:
        return None
    path = str(Path(model_file).expanduser().resolve())
    build: UserBuilder | KerasBuilder
    if path.endswith(".keras"):
        from despina.models.keras_model import KerasBuilder

        build = KerasBuilder(path, tuple(x.shape[1:]))
    else:
        build = UserBuilder(path, tuple(x.shape[1:]))
    check_fits(build, x, num_classes)
    return build

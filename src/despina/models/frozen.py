"""A frozen model: an ONNX file (or a TensorFlow SavedModel, converted to one) whose
probabilities and embeddings the audit uses as they are, without training anything.

For a user who cannot retrain (a vendor's model, a model trained elsewhere on more data),
cleanlab still finds label issues from its probabilities. The file's first output is the
class scores (probabilities when every row sums to 1 within 1e-3, logits otherwise); a
second output, when there is one, is the embedding, else the scores serve as one. These
probabilities are not out of fold: a model that saw the audited samples in training is
confident about their given labels, and finds fewer issues than cross-validation would.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from despina.core.errors import ConfigError, NotFoundError


def frozen_outputs(
    path: str | Path, x: np.ndarray, num_classes: int, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, classes), embeddings (n, d)) of the ONNX model (or TensorFlow
    SavedModel folder) at ``path`` for the preprocessed inputs ``x``, channels first; a
    model that takes them channels last gets them so. A ConfigError names both shapes when
    they do not fit."""
    file = Path(path)
    if is_saved_model(file):
        with tempfile.TemporaryDirectory() as tmp:
            session = _session(saved_model_onnx(file, Path(tmp) / "model.onnx"), "ONNX model")
    else:
        session = _session(file, "ONNX model")
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ConfigError(f"{file} takes {len(inputs)} inputs; a frozen model takes one batch")
    expected = list(inputs[0].shape[1:])

    def fits(shape: tuple[int, ...]) -> bool:
        return len(expected) == len(shape) and all(
            not isinstance(d, int) or d == s for d, s in zip(expected, shape, strict=True)
        )

    last = x.ndim >= 3 and not fits(x.shape[1:]) and fits((*x.shape[2:], x.shape[1]))
    if not (last or fits(x.shape[1:])):
        raise ConfigError(
            f"{file} takes inputs of shape {expected} per sample but the data gives "
            f"{list(x.shape[1:])} (channels first)"
        )
    if last:
        x = np.moveaxis(x, 1, -1)
    name = inputs[0].name
    scores, embs = [], []
    for i in range(0, len(x), batch):
        out = session.run(None, {name: np.ascontiguousarray(x[i : i + batch], np.float32)})
        scores.append(np.asarray(out[0], np.float64).reshape(len(out[0]), -1))
        emb = np.asarray(out[1] if len(out) > 1 else out[0], np.float32)
        embs.append(emb.reshape(len(emb), -1))
    s, e = np.concatenate(scores), np.concatenate(embs)
    if s.shape[1] != num_classes:
        raise ConfigError(
            f"{file} returns {s.shape[1]} class scores a sample; the data has {num_classes} "
            "classes (in sorted order of their names)"
        )
    if not (np.all(s >= 0) and np.allclose(s.sum(axis=1), 1.0, atol=1e-3)):
        s = np.exp(s - s.max(axis=1, keepdims=True))
        s /= s.sum(axis=1, keepdims=True)
    return s.astype(np.float32), e


def is_saved_model(path: str | Path) -> bool:
    """A TensorFlow SavedModel folder."""
    return (Path(path) / "saved_model.pb").is_file()


def saved_model_onnx(folder: Path, out: Path) -> Path:
    """A SavedModel converted to ONNX at ``out`` with tf2onnx (the ``tensorflow`` extra), in
    a process of its own so TensorFlow never shares one with PyTorch."""
    if (
        importlib.util.find_spec("tf2onnx") is None
        or importlib.util.find_spec("tensorflow") is None
    ):
        raise ConfigError(
            f"{folder} is a TensorFlow SavedModel: converting it needs TensorFlow and tf2onnx, "
            "pip install 'despina[tensorflow]' (or convert it yourself with python -m "
            "tf2onnx.convert --saved-model DIR --output model.onnx and pass the .onnx file)"
        )
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(folder),
           "--output", str(out), "--opset", "17"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0 or not out.is_file():
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        raise ConfigError(
            f"tf2onnx could not convert the SavedModel {folder}: "
            f"{lines[-1] if lines else 'no message'}"
        )
    return out


def _session(file: Path, what: str) -> Any:
    import onnxruntime as ort

    if not file.is_file():
        raise NotFoundError(f"{what} not found: {file}")
    try:
        return ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own types for a broken file
        raise ConfigError(f"cannot load {file} as an {what}: {exc}") from None


def torch_backbone_onnx(path: Path, out: Path) -> Path:
    """A backbone written in PyTorch (a ``.py`` file whose ``build()`` returns a module
    mapping images (batch, channels, height, width), scaled to [0, 1], to embeddings, and
    whose ``INPUT_SHAPE`` says (channels, height, width)) exported once to ``out``: from
    then on it runs as an ONNX backbone does."""
    import torch

    from despina.models.export import export_onnx
    from despina.models.user import load_user_file

    module = load_user_file(path, "build() returning a torch module")
    shape = getattr(module, "INPUT_SHAPE", None)
    if not (isinstance(shape, tuple | list) and len(shape) == 3 and shape[0] in (1, 3)):
        raise ConfigError(
            f"{path} needs INPUT_SHAPE = (channels, height, width), channels 1 or 3, beside "
            f"build(); it has {shape!r}"
        )
    try:
        net = module.build()
    except Exception as exc:
        raise ConfigError(f"{path}: build() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(net, torch.nn.Module):
        raise ConfigError(f"{path}: build() returned {type(net).__name__}, not a torch module")

    class _Single(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
            return (self.inner(x).flatten(1),)

    sample = np.random.default_rng(0).random((2, *(int(v) for v in shape)), np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        export_onnx(_Single(net), out, sample, ("embedding",))
    except Exception as exc:
        raise ConfigError(
            f"{path}: the module could not run on inputs of shape {(2, *shape)} and be "
            f"exported to ONNX: {type(exc).__name__}: {exc}"
        ) from None
    return out


class Backbone:
    """An ONNX image network whose embeddings a small head learns from, loaded once."""

    def __init__(self, path: str | Path) -> None:
        self.file = Path(path)
        self.session = _session(self.file, "ONNX backbone")
        shape = self.session.get_inputs()[0].shape
        if len(shape) != 4 or not isinstance(shape[1], int) or shape[1] not in (1, 3):
            raise ConfigError(
                f"{self.file} takes inputs of shape {shape}; an image backbone takes (batch, "
                "1 or 3 channels, height, width)"
            )
        self.channels = int(shape[1])
        #: The side it takes, None when its input size is free.
        self.side: int | None = (
            shape[2] if isinstance(shape[2], int) and shape[2] == shape[3] else None
        )

    def features(self, x: np.ndarray, batch: int = 128) -> np.ndarray:
        """Each input's embedding (the output named ``embedding``, else the last output),
        standardized per dimension over the dataset: a head trains on these."""
        names = [o.name for o in self.session.get_outputs()]
        wanted = "embedding" if "embedding" in names else names[-1]
        name = self.session.get_inputs()[0].name
        parts = []
        for i in range(0, len(x), batch):
            chunk = np.ascontiguousarray(x[i : i + batch], np.float32)
            (out,) = self.session.run([wanted], {name: chunk})
            parts.append(np.asarray(out, np.float32).reshape(len(out), -1))
        emb = np.concatenate(parts)
        return np.asarray((emb - emb.mean(axis=0)) / (emb.std(axis=0) + 1e-6), np.float32)

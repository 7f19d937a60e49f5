"""Export a classifier to ONNX (logits and embedding outputs) and check it against torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from despina.core.errors import ModelError


class _LogitsAndEmbedding(nn.Module):
    """One graph with both outputs the endpoint needs: class logits and the embedding."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.model.embed(x)  # type: ignore[operator]
        return self.model.head(emb), emb  # type: ignore[operator]


def export_onnx(model: nn.Module, path: Path, sample: np.ndarray, *, atol: float = 1e-4) -> float:
    """Write ``model`` to ``path`` with a dynamic batch axis; return the largest difference
    between ONNX Runtime's and torch's outputs on ``sample``, refusing more than ``atol``.

    The TorchScript exporter, because the torch.export one needs onnxscript and gains
    nothing for a plain CNN; its deprecation warning is silenced here on purpose.
    """
    import onnxruntime as ort

    model = model.eval()
    wrapped = _LogitsAndEmbedding(model).eval()
    x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
    axes = {"x": {0: "n"}, "logits": {0: "n"}, "embedding": {0: "n"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (x,),
            str(path),
            input_names=["x"],
            output_names=["logits", "embedding"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
        expected = [t.numpy() for t in wrapped(x)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy()})
    diff = max(float(np.abs(a - b).max()) for a, b in zip(expected, got, strict=True))
    if not diff <= atol:
        path.unlink(missing_ok=True)
        raise ModelError(f"ONNX export differs from torch by {diff:.2e} (> {atol:.0e})")
    return diff

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


def export_onnx(
    module: nn.Module,
    path: Path,
    sample: np.ndarray,
    outputs: tuple[str, ...],
    *,
    dynamic: dict[int, str] | None = None,
    check: np.ndarray | None = None,
    atol: float = 1e-4,
) -> float:
    """Write ``module`` (input ``x``, the named ``outputs``) to ``path``, traced on
    ``sample`` with the batch axis and the ``dynamic`` input axes free; return the largest
    difference between ONNX Runtime's and torch's outputs on ``check`` (default: the
    sample), refusing more than ``atol``.

    The TorchScript exporter, because the torch.export one needs onnxscript and gains
    nothing for plain CNNs; its deprecation warning is silenced here on purpose.
    """
    import onnxruntime as ort

    module = module.eval()
    x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
    probe = x if check is None else torch.from_numpy(np.ascontiguousarray(check, np.float32))
    axes: dict[str, dict[int, str]] = {"x": {0: "n", **(dynamic or {})}}
    axes.update({name: {0: "n"} for name in outputs})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x,),
            str(path),
            input_names=["x"],
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
        expected = [t.numpy() for t in module(probe)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": probe.numpy()})
    diff = max(float(np.abs(a - b).max()) for a, b in zip(expected, got, strict=True))
    if not diff <= atol:
        path.unlink(missing_ok=True)
        raise ModelError(f"ONNX export differs from torch by {diff:.2e} (> {atol:.0e})")
    return diff


def export_classifier(model: nn.Module, path: Path, sample: np.ndarray) -> float:
    """The classifier as one graph with logits and embedding outputs (see export_onnx)."""
    return export_onnx(_LogitsAndEmbedding(model.eval()), path, sample, ("logits", "embedding"))

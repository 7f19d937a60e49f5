"""The training losses a model may use: cross-entropy (with label smoothing) and two
noise-robust losses, for data whose labels are partly wrong.

- Generalized cross-entropy (Zhang & Sabuncu, 2018): ``(1 - p_y**q) / q``, between
  cross-entropy (q → 0) and mean absolute error (q = 1); q = 0.7 as in the paper.
- Symmetric cross-entropy (Wang et al., 2019): ``alpha * CE + beta * RCE``, the reverse
  term ``-sum(p * log(onehot))`` with log 0 clipped to -4; alpha 0.1, beta 1.0 as the
  paper's setting for ten classes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

GCE_Q = 0.7
SCE_ALPHA, SCE_BETA, SCE_LOG_ZERO = 0.1, 1.0, -4.0


def make_loss(name: str, label_smoothing: float = 0.0) -> LossFn:
    """The loss called ``name`` (``cross_entropy``, ``gce`` or ``sce``), mean over a batch."""
    if name == "cross_entropy":
        return lambda logits, y: F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if name == "gce":
        return _gce
    if name == "sce":
        return _sce
    raise ValueError(f"unknown loss {name!r}: use cross_entropy, gce or sce")


def _gce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p_y = torch.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1).clamp_min(1e-7)
    return ((1 - p_y**GCE_Q) / GCE_Q).mean()


def _sce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(logits, y)
    p_y = torch.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    rce = (-SCE_LOG_ZERO * (1 - p_y)).mean()  # -sum_k p_k log(onehot_k), log 0 := -4
    return SCE_ALPHA * ce + SCE_BETA * rce

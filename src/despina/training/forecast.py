"""A forecaster's residuals for long signals: a small hybrid network (convolutions, then a
GRU) learns to predict each step from the steps before it, and a step it cannot predict is
unusual for its series.

One forecaster is trained per channel over all the signals given, each standardized by
its own median and MAD, on a fixed number of updates drawn from windows of every signal,
so the cost does not grow with the data beyond the one prediction pass.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from despina.models.sequence import RecurrentNet

#: The steps the forecaster reads before the one it predicts, at most.
MAX_CONTEXT = 64
UPDATES = 1200
BATCH = 64
LEARNING_RATE = 3e-3
WIDTH = 32


def standardized(x: np.ndarray) -> np.ndarray:
    """``x`` centred on its median and scaled by its MAD (its std when the MAD is 0), with
    missing and infinite values replaced by the median."""
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros(len(x), np.float32)
    med = float(np.median(finite))
    scale = float(np.median(np.abs(finite - med))) * 1.4826 or float(finite.std()) or 1.0
    return np.where(np.isfinite(x), (x - med) / scale, 0.0).astype(np.float32)


def forecast_residuals(
    signals: list[np.ndarray], context: int, seed: int, updates: int = UPDATES
) -> list[np.ndarray]:
    """Per signal, the absolute one-step-ahead error of a forecaster trained on all of them,
    in the signal's own standardized units; 0 for the first ``context`` steps, which have
    nothing before them to read."""
    context = max(2, min(context, MAX_CONTEXT))
    values = [standardized(s) for s in signals]
    starts = [np.arange(len(v) - context) for v in values]
    owners = np.concatenate([np.full(len(s), k) for k, s in enumerate(starts)])
    offsets = np.concatenate(starts)
    if offsets.size == 0:
        return [np.zeros(len(s)) for s in signals]

    def windows(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.stack([values[owners[i]][offsets[i] : offsets[i] + context] for i in rows])
        y = np.array([values[owners[i]][offsets[i] + context] for i in rows], np.float32)
        return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)

    rng = np.random.default_rng(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = RecurrentNet(1, 1, WIDTH, "gru", convolutions=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        model.train()
        for _ in range(updates):
            x, y = windows(rng.integers(0, offsets.size, BATCH))
            optimizer.zero_grad()
            F.huber_loss(model(x).squeeze(1), y).backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        model.eval()
        errors = np.empty(offsets.size, np.float32)
        with torch.inference_mode():
            for lo in range(0, offsets.size, 4096):
                x, y = windows(np.arange(lo, min(lo + 4096, offsets.size)))
                errors[lo : lo + len(y)] = (model(x).squeeze(1) - y).abs().numpy()
    out = []
    for k, v in enumerate(values):
        r = np.zeros(len(v))
        r[context:] = errors[owners == k]
        out.append(r)
    return out

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
    # Each signal's windows of context + 1 steps (views, not copies): the first ``context``
    # steps are read, the last predicted.
    views = [
        np.lib.stride_tricks.sliding_window_view(v, context + 1)
        if len(v) > context
        else np.empty((0, context + 1), np.float32)
        for v in values
    ]
    sizes = np.array([len(w) for w in views])
    if not sizes.any():
        return [np.zeros(len(s)) for s in signals]
    owners = np.repeat(np.arange(len(views)), sizes)
    offsets = np.concatenate([np.arange(n) for n in sizes])

    rng = np.random.default_rng(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = RecurrentNet(1, 1, WIDTH, "gru", convolutions=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        model.train()
        for _ in range(updates):
            rows = rng.integers(0, offsets.size, BATCH)
            batch = torch.from_numpy(np.stack([views[owners[i]][offsets[i]] for i in rows]))
            optimizer.zero_grad()
            loss = F.huber_loss(model(batch[:, None, :context]).squeeze(1), batch[:, context])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        model.eval()
        out = []
        with torch.inference_mode():
            for v, view in zip(values, views, strict=True):
                r = np.zeros(len(v))
                for lo in range(0, len(view), 4096):
                    batch = torch.from_numpy(np.ascontiguousarray(view[lo : lo + 4096]))
                    pred = model(batch[:, None, :context]).squeeze(1)
                    r[context + lo : context + lo + len(batch)] = (pred - batch[:, context]).abs()
                out.append(r)
    return out

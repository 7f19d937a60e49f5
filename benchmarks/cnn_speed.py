"""CNN speed: the built-in CNN's training and prediction images/s channels-last (as shipped)
beside the same network in PyTorch's default NCHW layout, in bf16 autocast and in fp32.

One torch thread, as each cross-validation fold runs with two workers; the audit's
defaults (width 32, depth 2, batch 64, shifts as augmentation) on random images of
Fashion-MNIST's shape (1×28×28) and of the photo tiles' (3×32×32). Prediction is fp32,
512 images a batch, as ``despina.training.crossval.predict`` runs it.

    python benchmarks/cnn_speed.py [--steps 150]
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

from despina.models.cnn import SmallCNN
from despina.training.trainer import random_shift


class NCHWCNN(SmallCNN):
    """The shipped network, kept in PyTorch's default layout: the baseline."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def build(layout: str, channels: int) -> SmallCNN:
    torch.manual_seed(0)
    if layout == "channels-last":
        return SmallCNN(channels, 10)
    return NCHWCNN(channels, 10).to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


def train_rate(model: SmallCNN, x: torch.Tensor, y: torch.Tensor, bf16: bool, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    model.train()
    t0 = 0.0
    for step in range(steps + 10):  # the first 10 warm oneDNN up
        if step == 10:
            t0 = time.perf_counter()
        idx = torch.randint(0, len(x), (64,), generator=gen)
        xb = random_shift(x[idx], gen, 2)
        with cast:
            logits = model(xb)
        loss = torch.nn.functional.cross_entropy(logits.float(), y[idx])
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return steps * 64 / (time.perf_counter() - t0)


@torch.no_grad()
def predict_rate(model: SmallCNN, x: torch.Tensor) -> float:
    model.eval()
    model(x[:512])
    t0 = time.perf_counter()
    for i in range(0, len(x), 512):
        model(x[i : i + 512])
    return len(x) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=150)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows: list[list[object]] = []
    for channels, side in ((1, 28), (3, 32)):
        x = torch.rand((4096, channels, side, side))
        y = torch.randint(0, 10, (4096,))
        rates: dict[tuple[str, bool | str], float] = {}
        for layout in ("NCHW", "channels-last"):
            for bf16 in (True, False):
                rates[layout, bf16] = train_rate(build(layout, channels), x, y, bf16, args.steps)
            rates[layout, "predict"] = predict_rate(build(layout, channels), x)
        work = ((True, "train, bf16"), (False, "train, fp32"), ("predict", "predict, fp32"))
        for key, what in work:
            base, ours = rates["NCHW", key], rates["channels-last", key]
            rows.append([f"{channels}×{side}×{side}", what, round(base), round(ours), ours / base])
    print(table(["input", "work", "NCHW img/s", "channels-last img/s", "speed-up"], rows))


if __name__ == "__main__":
    main()

"""Train a classifier (the small CNN unless a builder says otherwise) with a fixed seed,
light augmentation for images, and early stopping."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from despina.core.config import ModelConfig, TrainConfig
from despina.models.base import EmbeddingClassifier, ModelBuilder
from despina.models.cnn import SmallCNN
from despina.training.losses import make_loss

logger = logging.getLogger(__name__)

#: A model's state dict as arrays (see :func:`weights`).
Weights = dict[str, np.ndarray]

#: Called after each epoch with (epoch, training loss, validation loss, validation
#: accuracy); raising in it (a pruned search trial) ends the training there.
EpochCallback = Callable[[int, float, float, float], None]


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translations of up to ``max_shift`` pixels, one per image (edge padding)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offs = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    return torch.stack(
        [
            padded[i, :, int(dy) : int(dy) + h, int(dx) : int(dx) + w]
            for i, (dy, dx) in enumerate(offs)
        ]
    )


def _zoom(x: torch.Tensor, generator: torch.Generator, jitter: float) -> torch.Tensor:
    """Random zoom in [1 - jitter, 1 + jitter] and translation up to ``jitter`` of the
    side, one per image: the framing errors of crops a detector cuts at serving time."""
    n = x.shape[0]
    u = torch.rand((n, 3), generator=generator) * 2 - 1
    scale = 1 + jitter * u[:, 0]
    theta = torch.zeros((n, 2, 3))
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = 2 * jitter * u[:, 1:]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def shift_pixels(x: np.ndarray) -> int:
    """How far the augmentation shifts images ``x`` (N, C, H, W): about 1/12 of the side,
    none at 8 px, where one pixel is a stroke."""
    return int(x.shape[-1] // 12)


def validation_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (train, validation) indices :func:`train_classifier` uses for ``seed``."""
    idx = np.arange(len(y))
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 and len(y) * fraction >= len(counts) else None
    tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(tr), np.sort(va)


def train_classifier(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
    build: ModelBuilder | None = None,
    start: Weights | None = None,
    epoch_share: float = 1.0,
) -> EmbeddingClassifier:
    """Train on normalized images ``x`` (N, C, H, W) with integer labels ``y``, or on any
    other input the model ``build`` makes accepts (a table's rows: no augmentation).

    A stratified ``validation_fraction`` is held out for early stopping; the weights of the
    best validation epoch are returned, in eval mode. ``start``: weights to continue from
    (:func:`weights` of a model of the same shape) for ``epoch_share`` of the epochs
    (:meth:`TrainConfig.epochs_for`).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    tr, va = validation_split(y, train_config.validation_fraction, seed)
    # Batches are gathered from ``x`` itself by index: no copy of the training rows (but
    # of a read-only array, which torch does not take).
    whole = np.ascontiguousarray(x) if x.flags.writeable else x.copy()
    xt, rows = torch.from_numpy(whole), torch.from_numpy(tr.astype(np.int64))
    yt = torch.from_numpy(y[tr])
    xv, yv = torch.from_numpy(np.ascontiguousarray(x[va])), torch.from_numpy(y[va])
    model = (
        build(num_classes)
        if build is not None
        else SmallCNN.from_config(x.shape[1], num_classes, model_config)
    )
    if start is not None:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in start.items()})
    images = x.ndim == 4
    opt = _optimizer(model, train_config)
    criterion = make_loss(train_config.loss, train_config.label_smoothing)
    epochs = train_config.epochs_for(len(tr), epoch_share)
    steps = epochs * max(1, -(-len(tr) // train_config.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=train_config.learning_rate, total_steps=steps
    )
    cast = _autocast(train_config.precision) if build is None and images else nullcontext
    shift = shift_pixels(x) if train_config.augment and images else 0
    best_loss, best_state, stale = float("inf"), copy.deepcopy(model.state_dict()), 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(tr), generator=gen)
        total = 0.0
        for at in range(0, len(order), train_config.batch_size):
            batch = order[at : at + train_config.batch_size]
            if len(batch) < 2:  # BatchNorm needs two samples
                continue
            xb = xt[rows[batch]]
            if shift:
                xb = random_shift(xb, gen, shift)
            if train_config.zoom_jitter and images:
                xb = _zoom(xb, gen, train_config.zoom_jitter)
            with cast():
                logits = model(xb)
            loss = criterion(logits.float(), yt[batch])  # the loss in fp32, whatever the cast
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            total += loss.item() * len(batch)
        val_loss, val_acc = _evaluate(model, xv, yv)
        if on_epoch is not None:
            on_epoch(epoch, total / max(1, len(tr)), val_loss, val_acc)
        if val_loss < best_loss - 1e-4:
            best_loss, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= train_config.patience:
                logger.debug("early stop after epoch %d (val loss %.4f)", epoch, best_loss)
                break
    model.load_state_dict(best_state)
    model.eval()
    return model


def weights(model: EmbeddingClassifier) -> Weights:
    """A model's weights as arrays: what :func:`train_classifier` continues from, and what
    crosses a process boundary or goes in a file."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): there, bf16
    autocast trains the CNN about twice as fast; elsewhere it is emulated and slower."""
    cpu = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


def _autocast(precision: str) -> Callable[[], AbstractContextManager[object]]:
    """The context each training step's forward pass runs in (its loss is taken in fp32)."""
    if precision == "bf16" or (precision == "auto" and native_bf16()):
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext


def _optimizer(model: EmbeddingClassifier, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=cfg.learning_rate,
            momentum=0.9,
            nesterov=True,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )


@torch.no_grad()
def _evaluate(model: EmbeddingClassifier, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Cross-entropy (what early stopping watches, whatever the training loss) and
    accuracy on the validation split."""
    if len(x) == 0:
        return 0.0, 0.0
    model.eval()
    loss, right = 0.0, 0
    for i in range(0, len(x), 512):
        logits = model(x[i : i + 512])
        loss += float(F.cross_entropy(logits, y[i : i + 512], reduction="sum"))
        right += int((logits.argmax(1) == y[i : i + 512]).sum())
    return loss / len(x), right / len(x)


@torch.no_grad()
def predict(
    model: EmbeddingClassifier, x: np.ndarray, batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, K) and penultimate embeddings (N, D) for ``x``."""
    model.eval()
    probs, embs = [], []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))
        e = model.embed(xb)
        probs.append(torch.softmax(model.head(e), dim=1).numpy())
        embs.append(e.numpy())
    if not probs:
        return np.empty((0, model.head.out_features), np.float32), np.empty(
            (0, model.embedding_dim), np.float32
        )
    return np.concatenate(probs), np.concatenate(embs)

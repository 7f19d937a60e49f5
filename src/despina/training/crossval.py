"""K-fold cross-validation: out-of-fold probabilities and embeddings for every sample."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from despina.core.config import ModelConfig, TrainConfig
from despina.core.errors import DataError
from despina.core.processes import THREAD_LIMITS
from despina.core.vectors import neighbor_index, unit_rows
from despina.models.base import ModelBuilder
from despina.training.trainer import EpochCallback, Weights, predict, train_classifier, weights


@dataclass(frozen=True)
class CrossValResult:
    """Out-of-fold outputs for every sample.

    ``neighbor_sims``/``neighbor_idx`` (N, k): each sample's most similar *training* samples
    (cosine, in the embedding space of the fold model that did not see the sample).
    ``weights``: each fold model's, which a later round may continue from.
    ``same_label_dist`` (N, k): cosine distances, ascending, from each sample to its nearest
    training samples *with its own label*, in the same space, and ``pred_label_dist`` to
    those with the label the fold model predicts for it (the outlier check's inputs).
    """

    pred_probs: np.ndarray
    embeddings: np.ndarray
    fold: np.ndarray
    neighbor_sims: np.ndarray
    neighbor_idx: np.ndarray
    same_label_dist: np.ndarray
    pred_label_dist: np.ndarray
    weights: tuple[Weights, ...] = ()


NEIGHBORS = 20
#: Out-of-fold probabilities, embeddings, neighbours (similarities, indices) and distances
#: to the given and to the predicted label's nearest training samples, for one fold.
FoldOutput = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
SAME_LABEL_NEIGHBORS = 10


def _oof_neighbors(
    train_emb: np.ndarray, test_emb: np.ndarray, train_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    k = min(NEIGHBORS, len(train_idx))
    sims, idx = neighbor_index(unit_rows(train_emb)).search(unit_rows(test_emb), k)
    missed = idx < 0  # an approximate search found fewer: repeat its nearest
    if missed.any():
        sims = np.where(missed, sims[:, :1], sims)
        idx = np.where(missed, idx[:, :1], idx)
    return sims, train_idx[idx]


def same_label_distances(
    train_emb: np.ndarray, train_y: np.ndarray, test_emb: np.ndarray, test_y: np.ndarray, k: int
) -> np.ndarray:
    """Cosine distances (ascending) from each test row to its ``k`` nearest training rows
    of the same label; a class with fewer than ``k`` training rows repeats its farthest,
    and one with none gives the largest distance, 2."""
    out = np.full((len(test_y), k), 2.0, np.float32)
    train_u, test_u = unit_rows(train_emb), unit_rows(test_emb)
    for c in np.unique(test_y):
        rows, members = np.flatnonzero(test_y == c), np.flatnonzero(train_y == c)
        if len(members) == 0:
            continue
        kk = min(k, len(members))
        sims, found = neighbor_index(train_u[members]).search(test_u[rows], kk)
        dist = np.clip(1.0 - sims, 0.0, 2.0)
        dist = np.maximum.accumulate(np.where(found < 0, 2.0, dist), axis=1)  # misses: far
        out[rows, :kk] = dist
        out[rows, kk:] = dist[:, -1:]
    return out


def run_fold(
    x: np.ndarray,
    y: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    num_classes: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    seed: int,
    threads: int | None,
    on_epoch: EpochCallback | None = None,
    build: ModelBuilder | None = None,
    start: Weights | None = None,
    epoch_share: float = 1.0,
) -> tuple[FoldOutput, Weights]:
    """Train one fold's model on ``train_idx`` (from ``start`` for ``epoch_share`` of the
    epochs, if given) and return its outputs for ``test_idx`` and its weights;
    ``threads``: torch's intra-op threads for it (None: as they are)."""
    if threads is not None:
        torch.set_num_threads(threads)
    model = train_classifier(x[train_idx], y[train_idx], num_classes, model_config,
                             train_config, seed, on_epoch, build, start, epoch_share)  # fmt: skip
    probs, emb = predict(model, x[test_idx])
    _, train_emb = predict(model, x[train_idx])
    sims, nidx = _oof_neighbors(train_emb, emb, train_idx)
    k = SAME_LABEL_NEIGHBORS
    same = same_label_distances(train_emb, y[train_idx], emb, y[test_idx], k)
    pred = same_label_distances(train_emb, y[train_idx], emb, probs.argmax(axis=1), k)
    return (probs, emb, sims, nidx, same, pred), weights(model)


def check_folds(
    y: np.ndarray, num_classes: int, folds: int, class_names: Sequence[str] | None = None
) -> None:
    """Refuse, saying exactly what to do, when a class has fewer images than folds: every
    fold must hold out some of each class and train on the rest."""
    counts = np.bincount(y, minlength=num_classes)
    present = np.flatnonzero(counts)
    smallest = int(present[np.argmin(counts[present])])
    n = int(counts[smallest])
    name = repr(class_names[smallest]) if class_names is not None else str(smallest)
    if n < 2:
        raise DataError(
            f"class {name} has only 1 readable image: cross-validation needs at least 2 "
            "images in every class (one to train on, one to hold out). Add images to it, "
            "or move its folder out of the dataset"
        )
    if folds > n:
        raise DataError(
            f"--folds {folds} is more than class {name} has images ({n}): every fold must "
            f"hold out some of each class. Use --folds {n} or fewer, or add images to it"
        )


def fold_splits(
    y: np.ndarray,
    num_classes: int,
    folds: int,
    seed: int,
    exclude: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each fold's (training rows, held-out rows), stratified and shuffled with ``seed``;
    rows in ``exclude`` (e.g. suspected label errors) are left out of training only."""
    check_folds(y, num_classes, folds, class_names)
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(skf.split(np.zeros(len(y)), y))
    if exclude is not None:
        splits = [(tr[~exclude[tr]], te) for tr, te in splits]
    return splits


def assemble(
    held_out: Sequence[np.ndarray],
    outputs: Sequence[FoldOutput],
    models: Sequence[Weights] = (),
) -> CrossValResult:
    """Every row's out-of-fold outputs from each fold's: ``outputs[k]`` for the rows
    ``held_out[k]``; neighbours cut to the fewest any fold found. ``models``: each fold
    model's weights."""
    n = sum(len(te) for te in held_out)
    probs = np.zeros((n, outputs[0][0].shape[1]), np.float32)
    fold_of = np.zeros(n, np.int64)
    k_nb = min(out[2].shape[1] for out in outputs)
    nb_sims = np.zeros((n, k_nb), np.float32)
    nb_idx = np.zeros((n, k_nb), np.int64)
    same = np.zeros((n, SAME_LABEL_NEIGHBORS), np.float32)
    pred = np.zeros_like(same)
    embs = np.zeros((n, outputs[0][1].shape[1]), np.float32)
    for k, (test_idx, out) in enumerate(zip(held_out, outputs, strict=True)):
        probs[test_idx], fold_of[test_idx], embs[test_idx] = out[0], k, out[1]
        nb_sims[test_idx], nb_idx[test_idx] = out[2][:, :k_nb], out[3][:, :k_nb]
        same[test_idx], pred[test_idx] = out[4], out[5]
    return CrossValResult(probs, embs, fold_of, nb_sims, nb_idx, same, pred, tuple(models))


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    folds: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    seed: int = 0,
    workers: int = 1,
    on_fold: Callable[[int], None] | None = None,
    exclude: np.ndarray | None = None,
    on_epoch: EpochCallback | None = None,
    class_names: Sequence[str] | None = None,
    build: ModelBuilder | None = None,
    start: Sequence[Weights] = (),
    epoch_share: float = 1.0,
) -> CrossValResult:
    """Train ``folds`` models (CNNs unless ``build`` makes others), each predicting the
    fold it did not see; with ``start`` (a round's weights on the same split and seed),
    fold k continues from ``start[k]`` for ``epoch_share`` of the epochs.

    With ``workers`` > 1 the folds run in separate processes with one torch thread each
    (two single-threaded processes beat one two-threaded process on small CNNs), those
    left over after whole waves with the idle processes' threads.
    ``on_epoch`` reports each training epoch, in the sequential case only; ``on_fold``
    reports each finished fold.
    """
    splits = fold_splits(y, num_classes, folds, seed, exclude, class_names)
    if start and len(start) != len(splits):
        raise ValueError(f"{len(start)} fold models to continue from, for {len(splits)} folds")

    def fold_args(k: int, threads: int | None, epochs: EpochCallback | None) -> tuple[Any, ...]:
        tr, te = splits[k]
        begin = start[k] if start else None
        return (x, y, tr, te, num_classes, model_config, train_config, seed + k, threads,
                epochs, build, begin, epoch_share)  # fmt: skip

    runs: list[tuple[FoldOutput, Weights]] = []
    if workers <= 1:
        for k in range(len(splits)):
            runs.append(run_fold(*fold_args(k, None, on_epoch)))
            if on_fold is not None:
                on_fold(k)
    else:
        for var, value in THREAD_LIMITS.items():
            os.environ.setdefault(var, value)
        ctx = mp.get_context("spawn")
        lanes = min(workers, len(splits))
        # Whole waves of one-thread folds, then the folds left over share every lane's
        # thread (5 folds on 2 workers: the fifth on 2 threads, not 1 beside an idle core).
        waves = len(splits) - len(splits) % lanes
        batches = (
            (range(waves), 1),
            (range(waves, len(splits)), lanes // max(1, len(splits) % lanes)),
        )
        with ProcessPoolExecutor(max_workers=lanes, mp_context=ctx) as pool:
            for ks, threads in batches:
                futures = [pool.submit(run_fold, *fold_args(k, threads, None)) for k in ks]
                for k, fut in zip(ks, futures, strict=True):
                    runs.append(fut.result())
                    if on_fold is not None:
                        on_fold(k)
    held_out = [te for _, te in splits]
    return assemble(held_out, [out for out, _ in runs], [w for _, w in runs])

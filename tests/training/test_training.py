from __future__ import annotations

import numpy as np
import pytest
import torch

from despina.core.config import ModelConfig, TrainConfig
from despina.core.errors import DataError
from despina.data.sources import digits_arrays
from despina.training import cross_validate, predict, train_classifier


def _digits() -> tuple[np.ndarray, np.ndarray]:
    images, y = digits_arrays()
    x = (images.astype(np.float32) / 255.0 - 0.5)[:, None] / 0.3
    return x, y


def test_cnn_learns_digits_with_a_fixed_seed() -> None:
    x, y = _digits()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    tr, te = idx[:1200], idx[1200:]
    cfg = TrainConfig(epochs=8)
    model = train_classifier(x[tr], y[tr], 10, ModelConfig(width=16), cfg, seed=0)
    probs, emb = predict(model, x[te])
    assert probs.shape == (len(te), 10) and emb.shape == (len(te), 32)
    assert (probs.argmax(1) == y[te]).mean() > 0.93
    again = train_classifier(x[tr], y[tr], 10, ModelConfig(width=16), cfg, seed=0)
    np.testing.assert_allclose(predict(again, x[te])[0], probs, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_each_precision_learns_digits_and_keeps_fp32_weights(precision: str) -> None:
    """bf16 autocast (the default where the CPU has native bfloat16) learns as well as fp32,
    and the model it returns is fp32, as export and serving expect."""
    x, y = _digits()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    tr, te = idx[:1200], idx[1200:]
    cfg = TrainConfig(epochs=8, precision=precision)
    model = train_classifier(x[tr], y[tr], 10, ModelConfig(width=16), cfg, seed=0)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    probs, _ = predict(model, x[te])
    assert probs.dtype == np.float32 and (probs.argmax(1) == y[te]).mean() > 0.93


def test_a_large_dataset_trains_fewer_epochs_to_the_step_budget() -> None:
    """Epochs are cut where they would pass max_steps; a small dataset runs them all."""
    cfg = TrainConfig(epochs=15, batch_size=64, max_steps=2_000)
    assert cfg.epochs_for(7_200) == 15  # 113 steps an epoch: 1,695 steps in all
    assert cfg.epochs_for(50_400) == 3  # 788 steps an epoch
    assert cfg.epochs_for(10_000_000) == 1
    assert TrainConfig(max_steps=None).epochs_for(10_000_000) == 15
    x, y = _digits()  # 1,617 training rows, 26 steps an epoch: a budget of 60 is 3 epochs
    seen: list[int] = []
    budget = TrainConfig(epochs=8, max_steps=60, patience=8)
    train_classifier(x, y, 10, ModelConfig(width=8), budget, seed=0,
                     on_epoch=lambda epoch, *_: seen.append(epoch))  # fmt: skip
    assert seen == [0, 1, 2]
    assert budget.epochs_given(len(y)) == len(seen)  # what a progress bar counts to


def test_a_continued_model_runs_its_share_of_the_epochs() -> None:
    cfg = TrainConfig(epochs=15, batch_size=64, max_steps=2_000)
    assert cfg.epochs_for(50_400, 1 / 3) == 1  # a third of 3 epochs of 788 steps
    assert cfg.epochs_for(7_200, 1 / 3) == 5  # a third of 15 of 113
    assert cfg.epochs_for(7_200, 0.01) == 1  # at least one
    assert cfg.epochs_given(8_000, 1 / 3) == cfg.epochs_for(7_200, 1 / 3)


def test_cross_validation_covers_every_sample_out_of_fold() -> None:
    x, y = _digits()
    x, y = x[:300], y[:300]
    cv = cross_validate(x, y, 10, 3, ModelConfig(width=8), TrainConfig(epochs=2), seed=0)
    assert cv.pred_probs.shape == (300, 10)
    np.testing.assert_allclose(cv.pred_probs.sum(1), 1, atol=1e-5)
    assert set(cv.fold.tolist()) == {0, 1, 2}
    # Neighbours are training samples of the fold that did not see the sample.
    assert (cv.fold[cv.neighbor_idx] != cv.fold[:, None]).all()


def test_more_folds_than_the_smallest_class_is_refused() -> None:
    x, y = _digits()
    y = y.copy()
    y[:3] = 9
    keep = np.r_[np.arange(3), np.flatnonzero(y != 9)]
    with pytest.raises(DataError, match="more than class 9 has images"):
        cross_validate(x[keep], y[keep], 10, 5, ModelConfig(), TrainConfig(epochs=1))


def test_a_later_round_continues_each_fold_model_for_its_share_of_the_epochs() -> None:
    """Fold k of the next round starts from fold k's weights and runs a third of the
    epochs: with them it predicts its held-out rows about as well as the round before, far
    better than a new model given as many epochs."""
    x, y = _digits()
    x, y = x[:900], y[:900]
    model, train = (
        ModelConfig(width=16),
        TrainConfig(epochs=6, patience=6, batch_size=8, learning_rate=3e-4),
    )
    first = cross_validate(x, y, 10, 3, model, train, seed=0)
    assert len(first.weights) == 3 and "head.weight" in first.weights[0]
    seen: list[int] = []
    later = cross_validate(x, y, 10, 3, model, train, seed=0, start=first.weights,
                           epoch_share=1 / 3, on_epoch=lambda e, *_: seen.append(e))  # fmt: skip
    assert seen == [0, 1] * 3  # two epochs a fold
    fresh = cross_validate(
        x, y, 10, 3, model, TrainConfig(epochs=2, batch_size=8, learning_rate=3e-4), seed=0
    )
    accuracy = [(cv.pred_probs.argmax(1) == y).mean() for cv in (first, later, fresh)]
    assert accuracy[1] > accuracy[0] - 0.02 and accuracy[1] > accuracy[2] + 0.2, accuracy
    with pytest.raises(ValueError, match="2 fold models to continue from, for 3 folds"):
        cross_validate(x, y, 10, 3, model, train, start=first.weights[:2])

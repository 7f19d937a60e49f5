"""One contract for every model family: it trains on real data, its embedding feeds its
head, and its ONNX export agrees with torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from despina.core.config import ModelConfig, TrainConfig
from despina.models.base import EmbeddingClassifier, ModelBuilder
from despina.models.export import export_classifier
from despina.models.mlp import MLPBuilder
from despina.models.sequence import FAMILIES, SequenceBuilder
from despina.preprocessing.sequence import SequencePipeline
from despina.training.trainer import predict, train_classifier


def _series() -> tuple[np.ndarray, np.ndarray]:
    from aeon.datasets import load_italy_power_demand

    x, y = load_italy_power_demand()
    x = SequencePipeline().fit(x[:300]).transform(np.asarray(x[:300], np.float32))
    return x, (np.asarray(y[:300]).astype(int) - 1).astype(np.int64)


def _table() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    return x.astype(np.float32), y.astype(np.int64)


CASES: list[tuple[str, ModelBuilder, object]] = [
    ("mlp", MLPBuilder(13, ()), _table),
    *[(f, SequenceBuilder(f, 1, 16), _series) for f in FAMILIES],
]


@pytest.mark.parametrize(("name", "build", "data"), CASES, ids=[c[0] for c in CASES])
def test_a_family_learns_and_exports(name: str, build: ModelBuilder, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x, y = data()
    k = int(y.max()) + 1
    model = train_classifier(x, y, k, ModelConfig(), TrainConfig(epochs=12, augment=False,
                             batch_size=32), seed=0, build=build)  # fmt: skip
    assert isinstance(model, EmbeddingClassifier)
    probs, emb = predict(model, x)
    assert emb.shape == (len(x), model.embedding_dim)
    assert (probs.argmax(1) == y).mean() > 0.7, name  # learned: chance is 0.5 or 0.4
    with torch.no_grad():
        again = torch.softmax(model.head(model.embed(torch.from_numpy(x[:5]))), 1).numpy()
    np.testing.assert_allclose(again, probs[:5], atol=1e-5)
    assert export_classifier(model, tmp_path / "m.onnx", x[:8]) <= 1e-4

"""An MLP for tables: categorical embeddings beside normalized numerics, then dense blocks.

The input is the matrix :class:`despina.preprocessing.table.TablePipeline` produces:
``numeric`` float columns first, then one integer code per categorical column.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from despina.models.base import EmbeddingClassifier
from despina.models.cnn import activation_layer


def embedding_size(cardinality: int) -> int:
    """fast.ai's rule of thumb, capped: enough room for a category's meaning, no more."""
    return int(min(16, round(1.6 * cardinality**0.56)))


class TabularMLP(EmbeddingClassifier):
    """``depth`` blocks of Linear → BatchNorm → activation → dropout, ``width`` wide."""

    def __init__(
        self,
        numeric: int,
        cardinalities: tuple[int, ...],
        num_classes: int,
        width: int = 128,
        depth: int = 2,
        dropout: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.numeric = numeric
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_size(c)) for c in cardinalities)
        size = numeric + sum(embedding_size(c) for c in cardinalities)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.BatchNorm1d(width), activation_layer(activation)]
            layers.append(nn.Dropout(dropout))
            size = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(size, num_classes)
        self.embedding_dim = size

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, : self.numeric]]
        for i, emb in enumerate(self.embeddings):
            parts.append(emb(x[:, self.numeric + i].long()))
        return self.body(torch.cat(parts, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@dataclass(frozen=True)
class MLPBuilder:
    """A picklable recipe for fresh MLPs (folds may train in other processes)."""

    numeric: int
    cardinalities: tuple[int, ...]
    width: int = 128
    depth: int = 2
    dropout: float = 0.1
    activation: str = "relu"

    def __call__(self, num_classes: int) -> TabularMLP:
        return TabularMLP(
            self.numeric,
            self.cardinalities,
            num_classes,
            self.width,
            self.depth,
            self.dropout,
            self.activation,
        )

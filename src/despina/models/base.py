"""What every model family gives the trainer and the audit: ``embed``, then a linear ``head``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class EmbeddingClassifier(nn.Module):
    """A classifier whose penultimate features are the audit's embeddings.

    Subclasses set ``head`` (the final linear layer) and ``embedding_dim`` and implement
    ``embed``; ``forward`` is the head over the embedding (with dropout where they use it).
    """

    head: nn.Linear
    embedding_dim: int

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


#: Builds a fresh, untrained model for a number of classes (one per fold and round).
ModelBuilder = Callable[[int], EmbeddingClassifier]

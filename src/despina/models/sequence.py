"""Models for sequences (n, channels, length): a 1D-CNN, GRU and LSTM networks, and a
hybrid whose convolutions shorten the series before a GRU reads it.

Each ``embed`` returns the features the audit's checks use: the CNN's globally pooled
channels, the recurrent networks' last hidden state concatenated with their mean over
time (the last state alone forgets the start of a long series).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from despina.models.base import EmbeddingClassifier

Family = Literal["cnn", "gru", "lstm", "hybrid"]
FAMILIES: tuple[Family, ...] = ("cnn", "gru", "lstm", "hybrid")


def _conv_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(inplace=True),
    )


class Conv1DNet(EmbeddingClassifier):
    """Three convolution blocks (kernels 7, 5, 3; Wang et al.'s fully convolutional
    baseline, 2017), global average pooling, a linear head."""

    def __init__(self, channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(channels, width, 7),
            _conv_block(width, width * 2, 5),
            _conv_block(width * 2, width, 3),
        )
        self.head = nn.Linear(width, num_classes)
        self.embedding_dim = width

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class RecurrentNet(EmbeddingClassifier):
    """A GRU or LSTM over the steps; optionally behind convolutions that halve the length
    twice (the hybrid), which makes long series cheaper and local shapes explicit."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        width: int = 64,
        cell: Literal["gru", "lstm"] = "gru",
        convolutions: bool = False,
    ) -> None:
        super().__init__()
        if convolutions:
            self.front: nn.Module = nn.Sequential(
                _conv_block(channels, width, 5), nn.MaxPool1d(2, ceil_mode=True),
                _conv_block(width, width, 3), nn.MaxPool1d(2, ceil_mode=True),
            )  # fmt: skip
            size = width
        else:
            self.front = nn.Identity()
            size = channels
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(size, width, batch_first=True)
        self.head = nn.Linear(2 * width, num_classes)
        self.embedding_dim = 2 * width

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        steps, _ = self.rnn(self.front(x).transpose(1, 2))
        return torch.cat([steps[:, -1], steps.mean(dim=1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@dataclass(frozen=True)
class SequenceBuilder:
    """A picklable recipe for fresh sequence models of one family."""

    family: Family
    channels: int
    width: int = 64

    def __call__(self, num_classes: int) -> EmbeddingClassifier:
        if self.family == "cnn":
            return Conv1DNet(self.channels, num_classes, self.width)
        if self.family == "hybrid":
            return RecurrentNet(self.channels, num_classes, self.width, "gru", True)
        return RecurrentNet(self.channels, num_classes, self.width, self.family)

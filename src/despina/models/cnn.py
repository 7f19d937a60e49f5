"""A small configurable CNN: conv blocks, global average pooling, a linear classifier."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from despina.core.config import ModelConfig
from despina.models.base import EmbeddingClassifier

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}


def activation_layer(name: str) -> nn.Module:
    cls = ACTIVATIONS[name]
    return cls(inplace=True) if cls in (nn.ReLU, nn.SiLU, nn.ELU) else cls()


class ResidualBlock(nn.Module):
    """Two convs + BN with a shortcut (a 1x1 conv where the width changes), then pooling."""

    def __init__(self, c_in: int, c_out: int, kernel: int, act: str, pool: nn.Module) -> None:
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, padding=pad, bias=False),
            nn.BatchNorm2d(c_out),
            activation_layer(act),
            nn.Conv2d(c_out, c_out, kernel, padding=pad, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1, bias=False)
        self.act = activation_layer(act)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.body(x) + self.shortcut(x)))


class SmallCNN(EmbeddingClassifier):
    """``depth`` blocks of two convs + BN + activation + 2x2 pooling, widths doubling; plain
    or residual. ``embed`` returns the pooled penultimate features the audit's checks use.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 32,
        depth: int = 2,
        dropout: float = 0.2,
        activation: str = "relu",
        kernel_size: int = 3,
        residual: bool = False,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        pad = kernel_size // 2
        for i in range(depth):
            out = width * 2**i
            pool: nn.Module = nn.MaxPool2d(2) if pooling == "max" else nn.AvgPool2d(2)
            if residual:
                layers.append(ResidualBlock(channels, out, kernel_size, activation, pool))
            else:  # the layout of models saved before residual blocks existed
                layers += [
                    nn.Conv2d(channels, out, kernel_size, padding=pad, bias=False),
                    nn.BatchNorm2d(out),
                    activation_layer(activation),
                    nn.Conv2d(out, out, kernel_size, padding=pad, bias=False),
                    nn.BatchNorm2d(out),
                    activation_layer(activation),
                    pool,
                ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)
        self.embedding_dim = channels
        # oneDNN's CPU convolutions run far faster channels-last (NHWC), in training and
        # inference alike (benchmarks/cnn_speed.py); the weights' values are the same.
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @classmethod
    def from_config(
        cls, in_channels: int, num_classes: int, config: ModelConfig | dict[str, Any]
    ) -> SmallCNN:
        """The CNN a :class:`ModelConfig` (or a saved model's JSON) describes."""
        cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_saved(config)
        return cls(in_channels, num_classes, **cfg.model_dump())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))

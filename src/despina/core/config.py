"""Pydantic configuration: frozen, strict about unknown keys, validated with clear messages."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class FrozenModel(BaseModel):
    """Base of every configuration object: immutable and refusing unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(FrozenModel):
    """Shape of the small CNN."""

    width: int = Field(32, ge=4, le=512, description="channels of the first conv block")
    depth: int = Field(2, ge=1, le=5, description="number of conv blocks (each halves the size)")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    activation: Literal["relu", "gelu", "silu", "elu"] = "relu"
    kernel_size: Literal[3, 5] = 3
    residual: bool = Field(False, description="blocks with a shortcut connection")
    pooling: Literal["max", "avg"] = "max"

    @classmethod
    def from_saved(cls, meta: dict[str, Any]) -> ModelConfig:
        """The config a saved model's JSON records (models saved before a field existed
        get its default, which is what they were trained with)."""
        return cls(**{k: meta[k] for k in cls.model_fields if k in meta})


class TrainConfig(FrozenModel):
    """How each CNN is trained."""

    epochs: int = Field(15, ge=1, le=1000)
    max_steps: int | None = Field(
        2_000,
        ge=1,
        description="on a large dataset, fewer epochs: as many as reach this many optimizer "
        "steps (at least one, at most epochs); at the other defaults a model of up to "
        "about 9,000 training images runs every epoch. None: every epoch whatever the size",
    )
    batch_size: int = Field(64, ge=1, le=4096)
    learning_rate: float = Field(2e-3, gt=0, le=1)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(4, ge=1, description="epochs without validation improvement")
    validation_fraction: float = Field(0.1, gt=0, lt=0.5)
    augment: bool = True
    zoom_jitter: float = Field(
        0.0,
        ge=0.0,
        le=0.3,
        description="random zoom and shift (fraction of the side) in training: makes a "
        "model served with an object extractor robust to imperfect crops",
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)
    loss: Literal["cross_entropy", "gce", "sce"] = Field(
        "cross_entropy",
        description="cross-entropy, or a noise-robust loss: generalized (gce) or "
        "symmetric (sce) cross-entropy",
    )
    optimizer: Literal["adamw", "sgd"] = "adamw"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="the built-in CNN's training arithmetic: bf16 autocast (about twice "
        "as fast on a CPU with native bfloat16: AVX512-BF16 or AMX), fp32, or auto (bf16 "
        "where the CPU has it); weights and predictions stay fp32",
    )

    def epochs_for(self, rows: int, share: float = 1.0) -> int:
        """The epochs a model trained on ``rows`` rows runs: ``epochs``, or fewer where
        they would pass ``max_steps`` (more data, more steps an epoch: each epoch of a
        large dataset does as much as several of a small one). ``share``: a model that
        continues from trained weights runs that share of them, rounded up."""
        full = self.epochs
        if self.max_steps is not None:
            per_epoch = max(1, -(-rows // self.batch_size))
            full = max(1, min(self.epochs, -(-self.max_steps // per_epoch)))
        return max(1, math.ceil(full * share - 1e-9))

    def epochs_given(self, rows: int, share: float = 1.0) -> int:
        """The epochs a model given ``rows`` rows runs at most: :meth:`epochs_for` the rows
        left once its validation share is held out (what a progress bar counts to)."""
        return self.epochs_for(rows - math.ceil(rows * self.validation_fraction), share)


def parse_share(text: str) -> float | None:
    """A ``round_share`` written as a number, a fraction such as 1/3, or none."""
    from despina.core.errors import ConfigError

    if text.strip().lower() == "none":
        return None
    try:
        num, _, den = text.partition("/")
        return float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(
            f"--round-share {text}: use a share of the epochs such as 1/3 or 0.5, or none"
        ) from None


#: The most worker processes an audit starts on its own: beyond it, folds and decoding
#: chunks are too few to keep more busy, and each process holds its own copy of the data.
MAX_AUTO_WORKERS = 8


class AuditConfig(FrozenModel):
    """Everything an audit run needs besides its source and output folder."""

    folds: int = Field(5, description="cross-validation folds, 2 to 50")
    image_size: int | None = Field(
        None, ge=8, le=512, description="model input size; None picks it from the data (<= 32)"
    )
    color_mode: Literal["auto", "rgb", "grayscale"] = "auto"
    seed: int = 0
    checks: tuple[str, ...] | None = None
    workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="processes for decoding and folds; None: the cores "
        f"this process may use, at most {MAX_AUTO_WORKERS}",
    )
    max_pixels: int = Field(64_000_000, ge=1, description="images above this are 'oversized'")
    drop_label_issues: bool = False
    map_rows: int = Field(
        20_000,
        ge=0,
        description="lay the samples out on a 2-D map (map.csv, the console's embedding "
        "map) when at most this many are readable; 0: no map. Each sample's nearest "
        "neighbours are listed either way",
    )
    label_rounds: int = Field(
        2,
        ge=1,
        le=3,
        description="cross-validation rounds; each later round trains without the samples "
        "the label check flagged in the round before, so the CNN stops learning the flips",
    )
    round_share: float | None = Field(
        1 / 3,
        gt=0,
        le=1,
        description="each later round continues the round before's fold models of the "
        "built-in CNN (on the same folds, without the flagged samples) for this share of "
        "their epochs; None, and for other models: "
        "new models trained from the start on a new fold split",
    )
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def fold_epochs(self, rows: int, train: TrainConfig, share: float | None = None) -> int:
        """The epochs (at most) a fold model runs in an audit of ``rows`` rows, trained
        with ``train``; ``share``: of them, continuing a model of the round before."""
        return train.epochs_given(rows - rows // self.folds, share or 1.0)

    @property
    def worker_count(self) -> int:
        """``workers``, or the cores this process may use (at most MAX_AUTO_WORKERS)."""
        from despina.core.processes import usable_cores

        return self.workers or min(usable_cores(), MAX_AUTO_WORKERS)

    @field_validator("folds")
    @classmethod
    def _folds_in_range(cls, folds: int) -> int:
        if not 2 <= folds <= 50:
            raise ValueError(
                f"--folds {folds}: use 2 to 50 folds (each sample is predicted by a model "
                "trained on the other folds; 5 is the default)"
            )
        return folds

    @model_validator(mode="after")
    def _checks_not_empty(self) -> AuditConfig:
        if self.checks is not None and len(self.checks) == 0:
            raise ValueError("checks must name at least one check, or be left out for all")
        return self


def default_home() -> Path:
    """Where Despina keeps its state: ``DESPINA_HOME`` or the user's data directory."""
    env = os.environ.get("DESPINA_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "despina"


_ON, _OFF = {"1", "on", "true", "yes"}, {"0", "off", "false", "no"}


def env_flag(name: str, default: bool) -> bool:
    """A yes/no setting from the environment; anything but on/off words is an error (a
    typo must never turn a security setting off)."""
    import os

    from despina.core.errors import ConfigError

    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    word = value.strip().lower()
    if word in _ON | _OFF:
        return word in _ON
    raise ConfigError(f"{name}={value!r}: use on or off")


#: Up to this many indexed rows a neighbour search is exact (a flat index: its cost grows
#: with rows × queries); above it FAISS's HNSW graph answers, its recall against exact
#: search measured in benchmarks/neighbors.py.
EXACT_ROWS = 100_000


def exact_rows() -> int:
    """``DESPINA_EXACT_ROWS``, else :data:`EXACT_ROWS`: a whole number, 0 for the graph
    always."""
    from despina.core.errors import ConfigError

    value = os.environ.get("DESPINA_EXACT_ROWS")
    if value is None or not value.strip():
        return EXACT_ROWS
    if not value.strip().isdigit():
        raise ConfigError(f"DESPINA_EXACT_ROWS={value!r}: give a whole number of rows")
    return int(value)

"""The search space of ``despina optimize``: which keys of the model, its training and
preprocessing may be searched, their default ranges, and the ``best.yaml`` a search
writes and ``despina audit --model-config`` reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from despina.core.config import AuditConfig, ModelConfig, TrainConfig
from despina.core.errors import ConfigError

#: Where each searchable key lives: the model, its training, or the preprocessing.
SECTIONS: dict[str, str] = {
    **dict.fromkeys(ModelConfig.model_fields, "model"),
    **dict.fromkeys(
        ("epochs", "batch_size", "learning_rate", "weight_decay", "augment", "label_smoothing",
         "loss", "optimizer"),
        "train",
    ),
    "image_size": "data",
    "color_mode": "data",
}  # fmt: skip

#: What is searched unless a space file says otherwise.
DEFAULT_SPACE: dict[str, Any] = {
    "width": [16, 32, 48, 64],
    "depth": [2, 3],
    "kernel_size": [3, 5],
    "residual": [False, True],
    "dropout": {"low": 0.0, "high": 0.5},
    "pooling": ["max", "avg"],
    "activation": ["relu", "gelu", "silu", "elu"],
    "loss": ["cross_entropy", "gce", "sce"],
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "optimizer": ["adamw", "sgd"],
    "learning_rate": {"low": 3e-4, "high": 1e-2, "log": True},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "batch_size": [32, 64, 128],
    "augment": [True, False],
}


@dataclass(frozen=True)
class Space:
    """Keys to search: a list is a choice among its values, ``{low, high[, log]}`` a range
    (integers when both ends are)."""

    params: dict[str, Any]

    @classmethod
    def parse(cls, given: dict[str, Any] | None, where: str = "the search space") -> Space:
        """Validated: known keys, non-empty choices and ranges, values each config takes."""
        params = dict(DEFAULT_SPACE if given is None else given)
        if not params:
            raise ConfigError(f"{where} is empty; name at least one key, e.g. 'width: [32, 64]'")
        for key, spec in params.items():
            if key not in SECTIONS:
                known = ", ".join(sorted(SECTIONS))
                raise ConfigError(f"{where}: unknown key {key!r}; searchable keys: {known}")
            if isinstance(spec, list):
                if not spec:
                    raise ConfigError(f"{where}: {key} has an empty list of choices")
                for value in spec:
                    _check_value(key, value, where)
            elif isinstance(spec, dict):
                if set(spec) - {"low", "high", "log"} or not {"low", "high"} <= set(spec):
                    raise ConfigError(
                        f"{where}: {key} must be a list of choices or {{low, high[, log]}}"
                    )
                low, high = spec["low"], spec["high"]
                if not all(isinstance(v, int | float) for v in (low, high)) or low >= high:
                    raise ConfigError(f"{where}: {key} has an empty range ({low} to {high})")
                if spec.get("log") and low <= 0:
                    raise ConfigError(f"{where}: {key} is searched on a log scale from {low}")
                _check_value(key, low, where)
                _check_value(key, high, where)
            else:
                raise ConfigError(f"{where}: {key} must be a list of choices or {{low, high}}")
        return cls(params)

    @classmethod
    def load(cls, path: Path | None) -> Space:
        if path is None:
            return cls.parse(None)
        data = _read_mapping(path, "the search space", "a mapping of keys to choices")
        return cls.parse(data, str(path))

    def suggest(self, trial: Any) -> dict[str, Any]:
        values = {}
        for key, spec in self.params.items():
            if isinstance(spec, list):
                values[key] = trial.suggest_categorical(key, spec)
            elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
                values[key] = trial.suggest_int(
                    key, spec["low"], spec["high"], log=spec.get("log", False)
                )
            else:
                values[key] = trial.suggest_float(
                    key, float(spec["low"]), float(spec["high"]), log=spec.get("log", False)
                )
        return values

    def distributions(self) -> dict[str, Any]:
        """Optuna's distribution for each key, as :meth:`suggest` draws it."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        found: dict[str, Any] = {}
        for key, spec in self.params.items():
            if isinstance(spec, list):
                found[key] = CategoricalDistribution(spec)
            elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
                found[key] = IntDistribution(spec["low"], spec["high"], log=spec.get("log", False))
            else:
                found[key] = FloatDistribution(
                    float(spec["low"]), float(spec["high"]), log=spec.get("log", False)
                )
        return found


OBJECTIVES = ("accuracy", "cost", "latency")


class SearchConfig(BaseModel):
    """A search: the ``optimize`` job's config, and what ``despina optimize`` is given."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(20, ge=1, description="finished trials the study should have")
    timeout_s: float | None = Field(None, gt=0, description="start no trial after this")
    space: dict[str, Any] | None = Field(None, description="the search space (default: all)")
    study: str | None = Field(None, description="study name (default: the group's)")
    seed: int = 0
    epochs: int | None = Field(None, ge=1, description="max epochs per trial")
    max_audit_minutes: float | None = Field(None, gt=0)
    objectives: tuple[str, ...] = ("accuracy", "cost")

    @field_validator("space")
    @classmethod
    def _space(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else Space.parse(value).params

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return parse_objectives(",".join(value))

    def base(self) -> AuditConfig:
        base = AuditConfig(seed=self.seed)
        if self.epochs is None:
            return base
        return base.model_copy(
            update={"train": base.train.model_copy(update={"epochs": self.epochs})}
        )


def parse_objectives(text: str) -> tuple[str, ...]:
    """``accuracy,cost[,latency]``: what the Pareto front is drawn over."""
    found = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    bad = [o for o in found if o not in OBJECTIVES]
    if bad or "accuracy" not in found or len(found) < 2:
        raise ConfigError(
            f"--objectives {text!r}: give accuracy and one or both of cost, latency "
            "(e.g. accuracy,latency)"
        )
    return found


def _check_value(key: str, value: Any, where: str) -> None:
    section = SECTIONS[key]
    try:
        if section == "model":
            ModelConfig(**{key: value})
        elif section == "train":
            TrainConfig(**{key: value})
        else:
            AuditConfig(**{key: value})
    except ValidationError as exc:
        why = exc.errors()[0]["msg"]
        raise ConfigError(f"{where}: {key}: {value!r} is not a valid value ({why})") from None


def configs(params: dict[str, Any], base: AuditConfig) -> AuditConfig:
    """``base`` with the trial's parameters in place."""
    model = {k: v for k, v in params.items() if SECTIONS[k] == "model"}
    train = {k: v for k, v in params.items() if SECTIONS[k] == "train"}
    data = {k: v for k, v in params.items() if SECTIONS[k] == "data"}
    return base.model_copy(
        update={
            "model": base.model.model_copy(update=model),
            "train": base.train.model_copy(update=train),
            **data,
        }
    )


def default_params(space: Space, base: AuditConfig) -> dict[str, Any]:
    """Despina's default model, in the space's terms (the study's first trial), or None
    for a key whose default lies outside the space."""
    found = {}
    for key, spec in space.params.items():
        section = SECTIONS[key]
        value = getattr(base.model if section == "model" else base.train, key, None)
        if section == "data":
            value = getattr(base, key)
        in_range = isinstance(spec, dict) and value is not None and spec["low"] <= value
        if (isinstance(spec, list) and value in spec) or (in_range and value <= spec["high"]):
            found[key] = value
    return found


def load_model_config(path: Path, base: AuditConfig | None = None) -> AuditConfig:
    """``base`` (default: the defaults) with the model, training and preprocessing of a
    ``best.yaml`` written by a search (or any YAML of those keys)."""
    data = _read_mapping(path, "the model config", "image_size, color_mode, model and train")
    allowed = {"image_size", "color_mode", "model", "train"}
    if set(data) - allowed:
        raise ConfigError(
            f"{path}: unknown keys {sorted(set(data) - allowed)}; use {sorted(allowed)}"
        )
    base = base or AuditConfig()
    try:
        return base.model_copy(
            update={
                "model": ModelConfig(**data.get("model", {})),
                "train": TrainConfig(**data.get("train", {})),
                **{k: data[k] for k in ("image_size", "color_mode") if k in data},
            }
        )
    except (ValidationError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read_mapping(path: Path, what: str, expected: str) -> dict[str, Any]:
    """A YAML file's top-level mapping; a ConfigError naming ``what`` it should hold."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {expected}")
    return data

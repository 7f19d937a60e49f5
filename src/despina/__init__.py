"""Despina: deep-learning data quality for image datasets.

>>> import despina
>>> report = despina.audit("builtin:digits", out="audit-out")  # doctest: +SKIP
>>> report.counts["label_issues"]  # doctest: +SKIP

Heavy parts (the audit, torch, the control plane) load on first use, so a worker process
that only runs a script does not pay for importing them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import despina.audit as _audit_package  # noqa: F401  (bound before the function of that name)
from despina.core.config import AuditConfig, ModelConfig, TrainConfig
from despina.core.errors import (
    CheckError,
    ConfigError,
    ConflictError,
    DataError,
    DespinaError,
    ModelError,
    NotFoundError,
    PathEscapeError,
    StateError,
    TaskError,
)

if TYPE_CHECKING:
    from despina.audit.report import AuditReport
    from despina.control.models import ClusterSpec, GroupSpec
    from despina.control.plane import ControlPlane
    from despina.core.progress import ProgressReporter

__version__ = "0.1.0"

_LAZY = {
    "AuditReport": "despina.audit.report",
    "ControlPlane": "despina.control.plane",
    "ClusterSpec": "despina.control.models",
    "GroupSpec": "despina.control.models",
}


def audit(
    source: str | Path,
    out: str | Path,
    config: AuditConfig | None = None,
    *,
    root: str | Path | None = None,
    progress: ProgressReporter | None = None,
) -> AuditReport:
    """Audit an image dataset into ``out`` (see :func:`despina.jobs.audit.audit`)."""
    from despina.jobs.audit import audit as run

    return run(source, out, config, root=root, progress=progress)


def optimize(source: str | Path, out: str | Path, **options: Any) -> Any:
    """Search the model for ``source`` and write ``best.yaml`` into ``out`` (see
    :func:`despina.jobs.optimize.optimize` for the options)."""
    from despina.jobs.optimize import optimize as run

    return run(source, out, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'despina' has no attribute {name!r}")


__all__ = [
    "AuditConfig",
    "AuditReport",
    "CheckError",
    "ClusterSpec",
    "ConfigError",
    "ConflictError",
    "ControlPlane",
    "DataError",
    "DespinaError",
    "GroupSpec",
    "ModelConfig",
    "ModelError",
    "NotFoundError",
    "PathEscapeError",
    "StateError",
    "TaskError",
    "TrainConfig",
    "__version__",
    "audit",
    "optimize",
]

"""Despina: deep-learning data quality for image datasets.

>>> import despina
>>> report = despina.audit("builtin:digits", out="audit-out")  # doctest: +SKIP
>>> report.counts["label_issues"]  # doctest: +SKIP
"""

from despina.audit.report import AuditReport
from despina.core.config import AuditConfig, ModelConfig, TrainConfig
from despina.core.errors import (
    CheckError,
    ConfigError,
    DataError,
    DespinaError,
    ModelError,
    NotFoundError,
    PathEscapeError,
)
from despina.jobs.audit import audit

__version__ = "0.1.0"

__all__ = [
    "AuditConfig",
    "AuditReport",
    "CheckError",
    "ConfigError",
    "DataError",
    "DespinaError",
    "ModelConfig",
    "ModelError",
    "NotFoundError",
    "PathEscapeError",
    "TrainConfig",
    "__version__",
    "audit",
]

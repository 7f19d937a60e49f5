"""Built-in checks, registered explicitly; third-party checks load from ``despina.checks``."""

from __future__ import annotations

from despina.audit.base import Check
from despina.audit.checks.defect import DefectCheck
from despina.audit.checks.duplicate import DuplicateCheck
from despina.audit.checks.imbalance import ImbalanceCheck
from despina.audit.checks.label import LabelCheck
from despina.audit.checks.outlier import OutlierCheck
from despina.core.registry import Registry

BUILTIN_CHECKS: tuple[type[Check], ...] = (
    LabelCheck,
    OutlierCheck,
    DuplicateCheck,
    DefectCheck,
    ImbalanceCheck,
)


def default_registry() -> Registry[type[Check]]:
    """A fresh registry holding the built-in checks (and, lazily, installed plug-ins)."""
    registry: Registry[type[Check]] = Registry("check", entry_point_group="despina.checks")
    for check in BUILTIN_CHECKS:
        registry.register(check)
    return registry


__all__ = [
    "BUILTIN_CHECKS",
    "DefectCheck",
    "DuplicateCheck",
    "ImbalanceCheck",
    "LabelCheck",
    "OutlierCheck",
    "default_registry",
]

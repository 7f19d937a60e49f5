"""Built-in checks, registered explicitly; third-party checks load from ``despina.checks``."""

from __future__ import annotations

from despina.audit.base import Check
from despina.audit.checks.defect import DefectCheck
from despina.audit.checks.duplicate import DuplicateCheck
from despina.audit.checks.imbalance import ImbalanceCheck
from despina.audit.checks.label import LabelCheck
from despina.audit.checks.outlier import OutlierCheck
from despina.audit.checks.rows import RowDuplicateCheck, TableOutlierCheck
from despina.audit.checks.series import (
    AnomalyCheck,
    SequenceDuplicateCheck,
    SequenceValueCheck,
)
from despina.audit.checks.values import ValueCheck
from despina.core.registry import Registry

BUILTIN_CHECKS: tuple[type[Check], ...] = (
    LabelCheck,
    OutlierCheck,
    DuplicateCheck,
    DefectCheck,
    ImbalanceCheck,
    ValueCheck,
    RowDuplicateCheck,
    TableOutlierCheck,
    SequenceValueCheck,
    SequenceDuplicateCheck,
    AnomalyCheck,
)


MODALITIES = ("image", "table", "sequence")


def default_registry(modality: str = "image") -> Registry[type[Check]]:
    """A fresh registry of the built-in checks for one kind of data (and, lazily, installed
    plug-ins). A name means the same finding for every kind (``duplicate``: duplicate
    images, or duplicate rows), so reports and ``--checks`` read alike."""
    registry: Registry[type[Check]] = Registry("check", entry_point_group="despina.checks")
    for check in BUILTIN_CHECKS:
        if modality in check.modalities:
            registry.register(check)
    return registry


__all__ = [
    "BUILTIN_CHECKS",
    "MODALITIES",
    "AnomalyCheck",
    "DefectCheck",
    "DuplicateCheck",
    "ImbalanceCheck",
    "LabelCheck",
    "OutlierCheck",
    "RowDuplicateCheck",
    "SequenceDuplicateCheck",
    "SequenceValueCheck",
    "TableOutlierCheck",
    "ValueCheck",
    "default_registry",
]

"""Audit: the check plug-ins, the runner and the report; takes model outputs, never trains."""

from despina.audit.base import AuditContext, Check, CheckResult
from despina.audit.checks import default_registry
from despina.audit.runner import CheckOutcome, run_checks

__all__ = ["AuditContext", "Check", "CheckOutcome", "CheckResult", "default_registry", "run_checks"]

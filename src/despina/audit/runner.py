"""Run a set of checks over one context: skip those missing inputs, record those that fail."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from despina.audit.base import AuditContext, Check, CheckResult
from despina.core.errors import ConfigError
from despina.core.progress import NullProgress, ProgressReporter
from despina.core.registry import Registry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckOutcome:
    """What happened to one check: its result, or why it was skipped or errored."""

    name: str
    status: Literal["ok", "skipped", "errored"]
    result: CheckResult | None = None
    reason: str = ""
    seconds: float = 0.0


def select_checks(registry: Registry[type[Check]], names: tuple[str, ...] | None) -> list[Check]:
    """Instantiate the named checks, or every check that is on by default."""
    if names is None:
        return [cls() for cls in registry if cls.default]
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ConfigError(f"unknown check(s) {unknown}; available: {', '.join(registry.names())}")
    return [registry.get(n)() for n in dict.fromkeys(names)]


def run_checks(
    ctx: AuditContext, checks: list[Check], progress: ProgressReporter | None = None
) -> dict[str, CheckOutcome]:
    """Run each check once; a raising check is recorded as errored and the rest go on."""
    progress = progress or NullProgress()
    progress.start("checks", len(checks))
    outcomes: dict[str, CheckOutcome] = {}
    for check in checks:
        missing = check.missing_inputs(ctx)
        if missing:
            outcomes[check.name] = CheckOutcome(
                check.name, "skipped", reason=f"needs {', '.join(missing)}"
            )
        else:
            t0 = time.perf_counter()
            try:
                result = check.run(ctx)
            except Exception as exc:
                logger.exception("check %s failed", check.name)
                outcomes[check.name] = CheckOutcome(
                    check.name,
                    "errored",
                    reason=f"{type(exc).__name__}: {exc}",
                    seconds=time.perf_counter() - t0,
                )
            else:
                if len(result.scores) != ctx.n:
                    outcomes[check.name] = CheckOutcome(
                        check.name,
                        "errored",
                        reason=f"returned {len(result.scores)} rows for {ctx.n} samples",
                    )
                else:
                    outcomes[check.name] = CheckOutcome(
                        check.name, "ok", result, seconds=time.perf_counter() - t0
                    )
        progress.advance("checks")
    progress.finish("checks")
    return outcomes

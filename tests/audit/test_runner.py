from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from despina.audit.base import AuditContext, Check, CheckResult
from despina.audit.checks import default_registry
from despina.audit.runner import run_checks, select_checks
from despina.core.errors import ConfigError
from tests.audit.helpers import context_for, digits_images


class Boom(Check):
    name: ClassVar[str] = "boom"

    def run(self, ctx: AuditContext) -> CheckResult:
        raise RuntimeError("kaput")


def test_a_raising_check_is_recorded_and_the_rest_go_on() -> None:
    images, y = digits_images(50)
    ctx = context_for(list(images), y)
    out = run_checks(ctx, [Boom(), *select_checks(default_registry(), ("defect",))])
    assert out["boom"].status == "errored" and "kaput" in out["boom"].reason
    assert out["defect"].status == "ok"


def test_a_check_without_its_inputs_is_skipped_with_a_reason() -> None:
    images, y = digits_images(50)
    out = run_checks(context_for(list(images), y), select_checks(default_registry(), ("label",)))
    assert out["label"].status == "skipped" and "pred_probs" in out["label"].reason


def test_unknown_check_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="available: label"):
        select_checks(default_registry(), ("label", "vibes"))


def test_result_validation_refuses_out_of_range_scores() -> None:
    from despina.core.errors import CheckError

    with pytest.raises(CheckError):
        CheckResult("x", np.array([1.5]), np.array([False]), 1.0)

"""One suite run against every registered check: the uniform-result contract."""

from __future__ import annotations

import numpy as np
import pytest

from despina.audit.base import Check
from despina.audit.checks import default_registry
from tests.audit.helpers import context_for, digits_images, one_hot_probs

CHECKS = list(default_registry())


def _full_context(n: int = 120, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    images, y = digits_images(n)
    imgs: list[np.ndarray | None] = list(images)
    imgs[1] = None  # one sample that did not decode
    probs = one_hot_probs(y, 10, 0.7)[np.arange(n) != 1]
    probs = probs + rng.random(probs.shape) * 0.1
    probs /= probs.sum(1, keepdims=True)
    emb = rng.normal(size=(n, 16))[np.arange(n) != 1]
    return context_for(imgs, y, probs, emb)


@pytest.mark.parametrize("check_cls", CHECKS, ids=lambda c: c.name)
def test_scores_flags_and_dataset_score_follow_the_contract(check_cls: type[Check]) -> None:
    ctx = _full_context()
    res = check_cls().run(ctx)
    assert res.name == check_cls.name
    assert res.scores.shape == (ctx.n,) and res.flags.shape == (ctx.n,)
    assert res.flags.dtype == bool
    assert np.all((res.scores >= 0) & (res.scores <= 1))
    assert 0 <= res.score <= 1


@pytest.mark.parametrize("check_cls", CHECKS, ids=lambda c: c.name)
def test_same_input_gives_the_same_result(check_cls: type[Check]) -> None:
    a, b = check_cls().run(_full_context()), check_cls().run(_full_context())
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.flags, b.flags)


@pytest.mark.parametrize("check_cls", CHECKS, ids=lambda c: c.name)
def test_empty_input_gives_an_empty_result(check_cls: type[Check]) -> None:
    ctx = context_for([], np.zeros(0, np.int64), np.zeros((0, 10)), np.zeros((0, 16)))
    res = check_cls().run(ctx)
    assert len(res.scores) == 0 and len(res.flags) == 0


@pytest.mark.parametrize("check_cls", CHECKS, ids=lambda c: c.name)
def test_every_check_declares_what_it_needs(check_cls: type[Check]) -> None:
    from despina.audit.base import INPUTS

    assert check_cls.name and check_cls.requires <= INPUTS
    assert check_cls.modalities

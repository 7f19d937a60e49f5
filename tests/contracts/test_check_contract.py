"""One suite run against every registered check, for each kind of data: the uniform-result
contract."""

from __future__ import annotations

import numpy as np
import pytest

from despina.audit.base import AuditContext, Check
from despina.audit.checks import MODALITIES, default_registry
from despina.data.table_inject import inject_table_problems
from tests.audit.helpers import context_for, digits_images, one_hot_probs, table_context

CASES = [(m, c) for m in MODALITIES for c in default_registry(m)]
IDS = [f"{m}-{c.name}" for m, c in CASES]


def _sequence_context(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> AuditContext:
    from despina.data.sequences import SequenceSet

    names = sorted(set(y.tolist()))
    yi = np.array([names.index(v) for v in y], np.int64)
    seq = SequenceSet(x, [str(i) for i in range(len(x))], list(y), np.full(len(x), x.shape[2]),
                      ["value"], "test", "wide", [[] for _ in x])  # fmt: skip
    probs = one_hot_probs(yi, max(2, len(names)), 0.8) if len(x) else np.zeros((0, 2))
    return AuditContext(
        ids=seq.ids,
        given_labels=list(y),
        class_names=names,
        valid=np.ones(len(x), bool),
        load_defects=[None] * len(x),
        labels=yi,
        pred_probs=probs,
        embeddings=rng.normal(size=(len(x), 16)),
        sequences=seq,
    )


def _full_context(modality: str, n: int = 120, seed: int = 0) -> AuditContext:
    rng = np.random.default_rng(seed)
    if modality == "sequence":
        from aeon.datasets import load_italy_power_demand

        x, y = load_italy_power_demand()
        x = np.asarray(x[:n], np.float32)
        x[0, 0, 3:] = x[0, 0, 3]  # a flatline
        x[1] = x[2]  # a copy
        return _sequence_context(x, np.asarray(y[:n]).astype(str), rng)
    if modality == "table":
        from sklearn.datasets import load_wine

        frame = inject_table_problems(load_wine(as_frame=True).frame, "target", 0.03, 0).frame
        y = frame["target"].astype(int).to_numpy()
        probs = one_hot_probs(y, 3, 0.8) + rng.random((len(y), 3)) * 0.1
        probs /= probs.sum(1, keepdims=True)
        return table_context(frame, "target", probs, rng.normal(size=(len(y), 16)))
    images, y = digits_images(n)
    imgs: list[np.ndarray | None] = list(images)
    imgs[1] = None  # one sample that did not decode
    probs = one_hot_probs(y, 10, 0.7)[np.arange(n) != 1]
    probs = probs + rng.random(probs.shape) * 0.1
    probs /= probs.sum(1, keepdims=True)
    emb = rng.normal(size=(n, 16))[np.arange(n) != 1]
    return context_for(imgs, y, probs, emb)


def _empty_context(modality: str) -> AuditContext:
    if modality == "sequence":
        return _sequence_context(
            np.zeros((0, 1, 24), np.float32), np.zeros(0, str), np.random.default_rng(0)
        )
    if modality == "table":
        import pandas as pd

        frame = pd.DataFrame({"a": [], "b": [], "y": []})
        return table_context(frame, "y", np.zeros((0, 2)), np.zeros((0, 16)))
    return context_for([], np.zeros(0, np.int64), np.zeros((0, 10)), np.zeros((0, 16)))


@pytest.mark.parametrize(("modality", "check_cls"), CASES, ids=IDS)
def test_scores_flags_and_dataset_score_follow_the_contract(
    modality: str, check_cls: type[Check]
) -> None:
    ctx = _full_context(modality)
    res = check_cls().run(ctx)
    assert res.name == check_cls.name
    assert res.scores.shape == (ctx.n,) and res.flags.shape == (ctx.n,)
    assert res.flags.dtype == bool
    assert np.all((res.scores >= 0) & (res.scores <= 1))
    assert 0 <= res.score <= 1


@pytest.mark.parametrize(("modality", "check_cls"), CASES, ids=IDS)
def test_same_input_gives_the_same_result(modality: str, check_cls: type[Check]) -> None:
    a, b = check_cls().run(_full_context(modality)), check_cls().run(_full_context(modality))
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.flags, b.flags)


@pytest.mark.parametrize(("modality", "check_cls"), CASES, ids=IDS)
def test_empty_input_gives_an_empty_result(modality: str, check_cls: type[Check]) -> None:
    res = check_cls().run(_empty_context(modality))
    assert len(res.scores) == 0 and len(res.flags) == 0


@pytest.mark.parametrize(("modality", "check_cls"), CASES, ids=IDS)
def test_every_check_declares_what_it_needs(modality: str, check_cls: type[Check]) -> None:
    from despina.audit.base import INPUTS

    assert check_cls.name and check_cls.requires <= INPUTS
    # Every kind it claims is one Despina audits (a typo would leave it unregistered).
    assert modality in check_cls.modalities and check_cls.modalities <= set(MODALITIES)

"""A corrections manifest (``despina review export``: id, action, label, user, at) applied
to a dataset and to an audit's findings: relabel and drop change what is audited or
trained; keep and outlier settle what the checks would otherwise decide."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, get_args

import pandas as pd

from despina.core.errors import DataError, NotFoundError
from despina.data.images import ImageDataset

#: What a person can decide about a sample in the console's review.
ReviewAction = Literal["keep", "relabel", "drop", "outlier"]
ACTIONS: tuple[str, ...] = get_args(ReviewAction)


def read_corrections(path: str | Path) -> dict[str, tuple[str, str]]:
    """Each sample id's (action, label) from the manifest at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"no corrections manifest at {path}: write one with "
                            "'despina review export AUDIT --out FILE'")  # fmt: skip
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot read the corrections manifest {path}: {exc}") from None
    missing = {"id", "action", "label"} - set(frame.columns)
    if missing:
        raise DataError(f"the corrections manifest {path} lacks the columns {sorted(missing)}; "
                        "it needs id,action,label (as 'despina review export' writes)")  # fmt: skip
    bad = sorted(set(frame["action"]) - set(ACTIONS))
    if bad:
        raise DataError(f"the corrections manifest {path} has unknown actions {bad}; "
                        f"use {sorted(ACTIONS)}")  # fmt: skip
    unlabeled = frame[(frame["action"] == "relabel") & (frame["label"] == "")]
    if len(unlabeled):
        raise DataError(f"{len(unlabeled)} relabel rows of {path} give no label, e.g. "
                        f"{unlabeled['id'].iloc[0]!r}")  # fmt: skip
    return {i: (a, lab) for i, a, lab in zip(frame["id"], frame["action"], frame["label"],
                                             strict=True)}  # fmt: skip


def apply_to_dataset(
    dataset: ImageDataset,
    corrections: dict[str, tuple[str, str]],
    leave_out: tuple[str, ...] = ("drop",),
) -> ImageDataset:
    """The dataset with relabeled samples' new labels and the samples reviewed as one of
    ``leave_out`` left out; refuses corrections of samples it does not have, or to labels
    it does not know."""
    ids = {r.id for r in dataset.records}
    unknown = sorted(set(corrections) - ids)
    if unknown:
        raise DataError(f"{len(unknown)} corrections name samples this source does not have "
                        f"(e.g. {unknown[:3]}): are they another audit's?")  # fmt: skip
    classes = set(dataset.class_names)
    new = [lab for a, lab in corrections.values() if a == "relabel" and lab not in classes]
    if new:
        raise DataError(f"corrections relabel to {sorted(set(new))[:5]}, which are not classes "
                        f"of this source ({sorted(classes)[:10]})")  # fmt: skip
    records = []
    for r in dataset.records:
        action, label = corrections.get(r.id, ("", ""))
        if action in leave_out:
            continue
        records.append(dataclasses.replace(r, label=label) if action == "relabel" else r)
    return dataclasses.replace(dataset, records=tuple(records))


def apply_to_findings(samples: pd.DataFrame, corrections: dict[str, tuple[str, str]]) -> None:
    """Settle, in place, what a person decided: a kept sample is neither a label issue nor
    an outlier; one marked outlier is one."""
    action = samples["id"].map(lambda i: corrections.get(i, ("", ""))[0])
    keep, outlier = action == "keep", action == "outlier"
    samples.loc[keep, ["is_label_issue", "is_outlier"]] = False
    samples.loc[keep, "suggested_label"] = ""
    samples.loc[outlier, "is_outlier"] = True

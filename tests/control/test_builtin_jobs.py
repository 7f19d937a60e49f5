"""The built-in jobs as tasks: train, then predict with the trained model, and audit; and
the row types a script may return."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from despina.control.models import ClusterSpec, GroupSpec
from despina.control.plane import ControlPlane
from despina.control.runtime import to_table
from despina.control.states import TaskState
from despina.core.errors import NotFoundError, TaskError
from tests.conftest import write_digits


@pytest.mark.slow
def test_train_then_predict_then_audit(plane: ControlPlane, home: Path) -> None:
    data = write_digits(home / "digits", per_class=12)
    plane.create_cluster(ClusterSpec(name="c", workers=2))
    train_cfg = {"image_size": 8, "train": {"epochs": 15, "batch_size": 16}, "model": {"width": 16}}
    plane.create_group(
        GroupSpec(name="train", cluster="c", source=str(data), job="train", config=train_cfg)
    )
    (trained,) = plane.start_group("train", wait=True)
    assert trained.state is TaskState.SUCCEEDED, plane.task_logs(trained.id)[0]
    assert trained.metrics["images"] == 120 and trained.metrics["train_accuracy"] > 0.5
    model_dir = Path(trained.outputs[0])
    assert (model_dir / "weights.safetensors").read_bytes().startswith(b"DSPENC1")

    plane.create_group(
        GroupSpec(
            name="predict",
            cluster="c",
            source=str(data),
            job="predict",
            config={"model": str(model_dir)},
            partitions=3,
        )
    )
    tasks = plane.start_group("predict", wait=True)
    assert {t.state for t in tasks} == {TaskState.SUCCEEDED}
    rows = plane.group_result("predict").to_pandas()
    assert len(rows) == 120 and rows["id"].is_unique
    assert (rows["predicted_label"] == rows["label"]).mean() > 0.5

    audit_cfg = {"folds": 2, "label_rounds": 1, "train": {"epochs": 2}, "model": {"width": 8}}
    plane.create_group(
        GroupSpec(name="audit", cluster="c", source=str(data), job="audit", config=audit_cfg)
    )
    (audited,) = plane.start_group("audit", wait=True)
    assert audited.state is TaskState.SUCCEEDED, plane.task_logs(audited.id)[0]
    out = Path(audited.outputs[0])
    # What the task wrote is sealed at rest; the plane (holding the key) reads it.
    assert (out / "summary.json").read_bytes().startswith(b"DSPENC1")
    assert (out / "report.html").read_bytes().startswith(b"DSPENC1")
    summary = json.loads(plane.read_output(out / "summary.json"))
    assert summary["counts"]["samples"] == 120 == audited.metrics["samples"]


def test_a_broken_model_path_fails_the_task_with_a_clear_reason(
    plane: ControlPlane, home: Path
) -> None:
    data = write_digits(home / "digits", per_class=2)
    plane.create_cluster(ClusterSpec(name="c", workers=1))
    missing = {"model": str(home / "gone")}
    with pytest.raises(NotFoundError, match="does not exist"):  # checked at creation
        plane.create_group(GroupSpec(name="p", cluster="c", source=str(data), job="predict",
                                     config=missing))  # fmt: skip
    (home / "no-model").mkdir()  # a folder, but not a model's: found when the task runs
    plane.create_group(
        GroupSpec(
            name="p",
            cluster="c",
            source=str(data),
            job="predict",
            config={"model": str(home / "no-model")},
            max_retries=0,
        )
    )
    (task,) = plane.start_group("p", wait=True)
    assert task.state is TaskState.FAILED
    assert "is not a Despina model folder" in (task.exit_reason or "")


def test_rows_may_be_dicts_a_dataframe_or_an_arrow_table() -> None:
    expected = pa.table({"a": [1, 2]})
    assert to_table([{"a": 1}, {"a": 2}]).equals(expected)
    assert to_table(pd.DataFrame({"a": [1, 2]})).equals(expected)
    assert to_table(expected) is expected
    with pytest.raises(TaskError, match="returned None"):
        to_table(None)
    with pytest.raises(TaskError, match="must return dicts"):
        to_table([1, 2])

"""The audit as stages of a task group: a scan task per partition writes a shard, then one
task audits the whole source from the shards, with the same findings as the one-task
audit; a source that changed between the stages is refused."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from despina.control.models import ClusterSpec, GroupSpec
from despina.control.plane import ControlPlane
from despina.control.states import TaskState
from despina.core.errors import DataError
from despina.data.sources import digits_arrays, load_source
from despina.jobs.audit import audit
from despina.jobs.scan import scan
from despina.jobs.shards import merge_shards, scan_shard
from tests.conftest import write_digits

CONFIG = {"folds": 2, "label_rounds": 1, "seed": 0, "train": {"epochs": 3},
          "model": {"width": 8}}  # fmt: skip
TWO_ROUNDS = {**CONFIG, "label_rounds": 2}
FINDINGS = ["is_label_issue", "suggested_label", "is_outlier", "is_duplicate", "defects"]


def samples_of(plane: ControlPlane, out: str) -> pd.DataFrame:
    text = plane.read_output(Path(out) / "samples.csv").decode()
    return pd.read_csv(io.StringIO(text)).set_index("id").sort_index()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_sharded_audit_runs_in_stages_and_equals_the_one_task_audit(
    plane: ControlPlane, home: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    data = write_digits(home / "digits", per_class=10)
    (home / "digits" / "3" / "broken.png").write_bytes(b"not a png")
    if backend == "ray":
        request.getfixturevalue("ray_session")
        plane.create_cluster(ClusterSpec(name="c", backend="ray", address="auto", workers=2))
    else:
        plane.create_cluster(ClusterSpec(name="c", workers=2))
    for name, partitions in (("whole", 1), ("sharded", 3)):
        spec = GroupSpec(name=name, cluster="c", source=str(data), job="audit",
                         config=TWO_ROUNDS, partitions=partitions, timeout_s=300)  # fmt: skip
        plane.create_group(spec)
        plane.start_group(name)
    plane.run(groups=["whole", "sharded"], until_done=True)  # side by side
    (whole,) = plane.list_tasks(group="whole")
    tasks = sorted(plane.list_tasks(group="sharded"), key=lambda t: t.partition)
    # Three scans; two folds of each of two rounds; the audit.
    assert [t.stage for t in tasks] == [0, 0, 0, 1, 1, 2, 2, 3]
    assert all(t.state is TaskState.SUCCEEDED for t in tasks), plane.task_logs(tasks[-1].id)[0]
    scans, folds, final = tasks[:3], tasks[3:7], tasks[7]
    assert [(t.metrics["round"], t.metrics["fold"]) for t in folds] == [(0, 0), (0, 1), (1, 0),
                                                                       (1, 1)]  # fmt: skip
    # Each trained its epochs: the second round continues the first's models for a third.
    assert [t.done for t in folds] == [3, 3, 1, 1]
    assert all(0 < t.metrics["peak_rss_mib"] < 4096 for t in tasks)  # the worker's, per task
    assert sum(t.done for t in scans) == 101 and sum(t.metrics["unreadable"] for t in scans) == 1
    assert final.started_at >= max(t.ended_at for t in scans)  # type: ignore[operator,type-var]

    one, staged = samples_of(plane, whole.outputs[0]), samples_of(plane, final.outputs[0])
    assert list(one.index) == list(staged.index) and len(one) == 101
    pd.testing.assert_frame_equal(one[FINDINGS], staged[FINDINGS])
    assert staged.loc["3/broken.png", "defects"] == "corrupt"


def test_an_audit_of_shards_refuses_a_source_that_changed(tmp_path: Path) -> None:
    data = write_digits(tmp_path / "digits", per_class=4)
    records = load_source(str(data)).records
    shard = scan_shard(records[:-1], 8, 64_000_000)  # the last image came after the scan
    with pytest.raises(DataError, match="changed after it was scanned"):
        audit(data, tmp_path / "out", scanned=merge_shards([shard]))


def test_shards_of_different_image_sizes_are_refused(tmp_path: Path) -> None:
    data = write_digits(tmp_path / "digits", per_class=2)
    records = load_source(str(data)).records
    shards = [scan_shard(records[:10], 8, 64_000_000), scan_shard(records[10:], 16, 64_000_000)]
    with pytest.raises(DataError, match="set image_size"):
        merge_shards(shards)
    ids, result = merge_shards([scan_shard(records[:10], 8, 64_000_000),
                                scan_shard(records[10:], 8, 64_000_000)])  # fmt: skip
    assert ids == [r.id for r in records] and result.resized.shape == (20, 8, 8, 3)
    direct = scan(records, 8)  # one pass over everything: the shards hold the same
    np.testing.assert_array_equal(result.resized, direct.resized)
    for got, want in zip(result.features, direct.features, strict=True):
        assert got is not None and want is not None and got.pixel_hash == want.pixel_hash
        np.testing.assert_array_equal(got.stats, want.stats)
        np.testing.assert_array_equal(got.thumb, want.thumb)


@pytest.mark.slow
def test_a_killed_fold_task_is_retried_alone(plane: ControlPlane, home: Path) -> None:
    """SIGKILL the first fold task once it runs: that task alone runs again, and the audit
    ends with every row; no scan runs twice. (A killed audit task: test_faults.py, where
    the whole server dies.)"""
    import os
    import signal
    import threading

    from despina.control.executors.local import LocalExecutor
    from despina.control.scheduler import Scheduler
    from tests.control.fixtures import wait_for

    data = write_digits(home / "digits", per_class=12)
    plane.create_cluster(ClusterSpec(name="c", workers=2))
    plane.create_group(GroupSpec(name="g", cluster="c", source=str(data), job="audit",
                                 config=CONFIG, partitions=2, timeout_s=300))  # fmt: skip
    tasks = sorted(plane.start_group("g"), key=lambda t: t.partition)
    assert [t.stage for t in tasks] == [0, 0, 1, 1, 2]
    target = tasks[2]
    sched = Scheduler(plane.store, plane.settings)
    thread = threading.Thread(target=sched.run, kwargs={"until_done": True}, daemon=True)
    thread.start()
    wait_for(lambda: plane.get_task(target.id).state is TaskState.RUNNING, 120)
    executor = sched.executors["c"]
    assert isinstance(executor, LocalExecutor)
    wait_for(lambda: target.id in executor.worker_pids(), 30)
    os.kill(executor.worker_pids()[target.id], signal.SIGKILL)
    thread.join(180)
    assert not thread.is_alive()
    done = sorted(plane.list_tasks(group="g"), key=lambda t: t.partition)
    assert all(t.state is TaskState.SUCCEEDED for t in done), [
        (t.state, t.exit_reason, plane.task_logs(t.id)[0][-2000:]) for t in done
    ]
    assert [t.attempt for t in done] == [2 if t.id == target.id else 1 for t in tasks]
    assert len(samples_of(plane, done[-1].outputs[0])) == 120


def test_fold_tables_put_back_together_are_the_cross_validation(tmp_path: Path) -> None:
    from despina.core.config import ModelConfig, TrainConfig
    from despina.core.vectors import torch_threads
    from despina.jobs.folds import fold_table, read_round
    from despina.training.crossval import cross_validate, fold_splits, run_fold

    x, y = digits_arrays()
    x, y = x[:150, None].astype(np.float32) / 255, y[:150]
    model, train = ModelConfig(width=8), TrainConfig(epochs=1)
    # One thread, as a fold task trains: on two, some CPUs' kernels round differently from
    # run to run, and near-tied neighbours swap places.
    with torch_threads(1):
        whole = cross_validate(x, y, 10, 3, model, train, seed=5)
        splits = fold_splits(y, 10, 3, seed=5)
        tables = [fold_table(k, te, *run_fold(x, y, tr, te, 10, model, train, 5 + k, None))
                  for k, (tr, te) in enumerate(splits)]  # fmt: skip
    merged = read_round(tables[::-1])  # in any order
    for name in ("pred_probs", "embeddings", "fold", "neighbor_idx", "same_label_dist"):
        want, got = getattr(whole, name), getattr(merged, name)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)
    for want, got in zip(whole.weights, merged.weights, strict=True):  # what round 2 continues
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], atol=1e-6, err_msg=key)
    with pytest.raises(DataError, match="different runs"):
        read_round([tables[0], tables[0], tables[2]])


def test_a_shard_the_audit_cannot_read_fails_its_task_naming_the_path_and_the_storage(
    plane: ControlPlane, home: Path
) -> None:
    """A node that does not see the group's output folder (here: a shard gone after its
    scan) fails the task that needs it with a reason naming the file and what to fix."""
    data = write_digits(home / "digits", per_class=4)
    plane.create_cluster(ClusterSpec(name="c", workers=1))
    config = {**CONFIG, "checks": ["duplicate", "defect"]}  # no model: scans, then the audit
    plane.create_group(GroupSpec(name="u", cluster="c", source=str(data), job="audit",
                                 config=config, partitions=2, max_retries=0))  # fmt: skip
    tasks = sorted(plane.start_group("u"), key=lambda t: t.partition)
    assert [t.stage for t in tasks] == [0, 0, 1]
    plane.cancel_task(tasks[2].id)  # held back until a shard is gone
    plane.run(groups=["u"], until_done=True)
    scanned = plane.get_task(tasks[1].id)
    assert scanned.state is TaskState.SUCCEEDED
    shard = scanned.outputs[0]
    Path(shard).unlink()
    plane.retry_task(tasks[2].id)
    plane.run(groups=["u"], until_done=True)
    failed = plane.get_task(tasks[2].id)
    assert failed.state is TaskState.FAILED
    reason = " ".join((failed.exit_reason or "").split())
    assert shard in reason and f"task {tasks[1].id}" in reason, reason
    assert "storage every node of the cluster reads" in reason, reason

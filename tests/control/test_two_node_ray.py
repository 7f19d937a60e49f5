"""A real Ray cluster of two nodes on one machine: a staged audit's tasks run on both, and
its result is whole; a fold task on a node that dies runs again on the other. Its own
module: the cluster is module-scoped, and a module's other Ray tests start a one-node
instance instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from despina.control.models import ClusterSpec, GroupSpec, Resources
from despina.control.plane import ControlPlane
from despina.control.states import TaskState
from tests.conftest import write_digits
from tests.control.test_staged_audit import CONFIG, samples_of


@pytest.mark.slow
def test_the_stages_run_on_both_nodes_of_a_two_node_ray_cluster(
    plane: ControlPlane, home: Path, two_node_ray: str
) -> None:
    data = write_digits(home / "digits", per_class=10)
    plane.create_cluster(ClusterSpec(name="two", backend="ray", address=two_node_ray,
                                     workers=2, resources=Resources(cpus=2)))  # fmt: skip
    plane.create_group(GroupSpec(name="a", cluster="two", source=str(data), job="audit",
                                 config=CONFIG, partitions=4, timeout_s=300))  # fmt: skip
    tasks = plane.start_group("a", wait=True)
    assert all(t.state is TaskState.SUCCEEDED for t in tasks), [t.exit_reason for t in tasks]
    nodes = {t.metrics["node"] for t in tasks}
    assert len(nodes) == 2, nodes  # both nodes ran tasks
    final = max(tasks, key=lambda t: t.stage)
    assert len(samples_of(plane, final.outputs[0])) == 100


@pytest.mark.slow
def test_a_fold_task_on_a_ray_node_that_dies_runs_again_on_the_other(
    plane: ControlPlane, home: Path, two_node_ray_cluster: Any
) -> None:
    """The worker node is killed while a fold task trains on it: that fold runs again on the
    head, nothing else runs twice, and the audit is whole."""
    import threading

    from despina.control.scheduler import Scheduler
    from tests.control.fixtures import RAY_NODE, wait_for

    cluster = two_node_ray_cluster
    (worker,) = cluster.worker_nodes
    data = write_digits(home / "digits", per_class=24)
    plane.create_cluster(ClusterSpec(name="two", backend="ray", address=cluster.address,
                                     workers=2, resources=Resources(cpus=1)))  # fmt: skip
    config = {**CONFIG, "train": {"epochs": 300, "patience": 300}}  # long enough to be caught
    plane.create_group(GroupSpec(name="f", cluster="two", source=str(data), job="audit",
                                 config=config, partitions=2, timeout_s=300))  # fmt: skip
    tasks = sorted(plane.start_group("f"), key=lambda t: t.partition)
    folds = [t.id for t in tasks if t.stage == 1]

    def training_on_the_worker_node() -> bool:
        # A task's log names the Ray node it runs on from its first line.
        for i in folds:
            task = plane.get_task(i)
            log = Path(task.log_path)
            if 0 < task.done < 300 and log.exists() and worker.node_id in log.read_text():
                return True
        return False

    sched = Scheduler(plane.store, plane.settings)
    thread = threading.Thread(target=sched.run, kwargs={"until_done": True}, daemon=True)
    thread.start()
    try:
        # Each node has one CPU and each task takes one: one of the folds trains on the worker.
        wait_for(training_on_the_worker_node, 180, 0.02, "a fold training on the worker node")
        cluster.remove_node(worker, allow_graceful=False)
        thread.join(240)
    finally:
        cluster.add_node(**RAY_NODE)  # the module's cluster has two nodes again
        cluster.wait_for_nodes()
    assert not thread.is_alive()
    done = sorted(plane.list_tasks(group="f"), key=lambda t: t.partition)
    assert all(t.state is TaskState.SUCCEEDED for t in done), [t.exit_reason for t in done]
    assert sorted(t.attempt for t in done if t.stage == 1) == [1, 2]
    assert all(t.attempt == 1 for t in done if t.stage != 1)
    retried = next(t for t in done if t.stage == 1 and t.attempt == 2)
    assert retried.metrics["node"] == cluster.head_node.node_id  # the node still alive
    assert len(samples_of(plane, done[-1].outputs[0])) == 240

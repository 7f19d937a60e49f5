"""A real Ray cluster of two nodes on one machine: a staged audit's tasks run on both, and
its result is whole. Its own module: the cluster is module-scoped, and a module's other Ray
tests start a one-node instance instead."""

from __future__ import annotations

from pathlib import Path

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

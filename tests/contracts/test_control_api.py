"""One contract for the embedded :class:`ControlPlane` and the HTTP client of a real server:
the same calls return the same types and raise the same errors.

A task group of a user script runs end to end through each, failures are retried group
by group, results come back decrypted, and a group whose runner died is resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from despina.control.client import HttpControlClient
from despina.control.interface import ControlAPI
from despina.control.models import (
    Cluster,
    ClusterSpec,
    Deployment,
    GroupSpec,
    GroupStatus,
    Task,
    TaskGroup,
)
from despina.control.partitions import plan
from despina.control.plane import ControlPlane
from despina.control.states import TaskState
from despina.core.errors import ConflictError, NotFoundError, PathEscapeError
from tests.control.fixtures import ThreadServer, write_files
from tests.waiting import wait_for

#: A script whose partition 1 fails until a flag file exists.
FLAKY = """
import os

def process(batch, context):
    if context.partition == 1 and not os.path.exists(os.environ["FLAG"]):
        raise RuntimeError("partition 1 fails until the flag is set")
    return [{"name": os.path.basename(p), "size": os.path.getsize(p)} for p in batch]
"""


@pytest.fixture(params=["embedded", "server"])
def connect(
    request: pytest.FixtureRequest, plane: ControlPlane
) -> Iterator[Callable[[], ControlAPI]]:
    """Connect to the plane itself, or to a real server on loopback over the same store
    (started on the first call, so a test can set the store up before a scheduler runs)."""
    opened: list[tuple[ThreadServer, HttpControlClient]] = []

    def make() -> ControlAPI:
        if request.param == "embedded":
            return plane
        server = ThreadServer(plane)
        opened.append((server, HttpControlClient(server.url, token=server.token)))
        return opened[-1][1]

    yield make
    for server, client in opened:
        client.close()
        server.stop()


@pytest.fixture
def api(connect: Callable[[], ControlAPI]) -> ControlAPI:
    return connect()


def _run(api: ControlAPI, name: str) -> list[Task]:
    """Start a group and wait until every task has ended: a server's scheduler runs it,
    the embedded plane runs it in this process (``despina group start --wait``)."""
    return api.start_group(name, wait=True)


def test_both_implement_the_interface(api: ControlAPI) -> None:
    assert isinstance(api, ControlAPI)


def test_clusters_come_back_as_the_same_snapshots(api: ControlAPI) -> None:
    made = api.create_cluster(ClusterSpec(name="c", workers=2))
    assert isinstance(made, Cluster) and made.workers == 2
    assert api.get_cluster("c") == made
    assert api.list_clusters() == [made]
    with pytest.raises(ConflictError, match="already exists"):
        api.create_cluster(ClusterSpec(name="c"))
    api.delete_cluster("c")
    with pytest.raises(NotFoundError, match="no cluster named 'c'"):
        api.get_cluster("c")


def test_a_group_runs_is_retried_and_returns_its_rows(
    api: ControlAPI, plane: ControlPlane, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = home / "flag"
    script = home / "flaky.py"
    script.write_text(FLAKY)
    api.create_cluster(ClusterSpec(name="c", workers=2))
    spec = GroupSpec(
        name="g",
        cluster="c",
        source=str(write_files(home / "data", 6)),
        script=str(script),
        partitions=3,
        max_retries=0,
        env={"FLAG": str(flag)},
    )
    group = api.create_group(spec)
    assert isinstance(group, TaskGroup) and api.get_group("g") == group
    assert api.list_groups() == [group]

    tasks = _run(api, "g")
    assert all(isinstance(t, Task) for t in tasks)
    states = {t.partition: t.state for t in api.list_tasks(group="g")}
    assert states == {0: TaskState.SUCCEEDED, 1: TaskState.FAILED, 2: TaskState.SUCCEEDED}
    status = api.group_status("g")
    assert isinstance(status, GroupStatus) and status.state == "FAILED"
    with pytest.raises(NotFoundError, match="not complete"):
        api.group_result("g")
    with pytest.raises(ConflictError, match="despina group retry g"):
        api.start_group("g")

    flag.write_text("go")
    retried = api.retry_failed("g")
    assert [t.partition for t in retried] == [1]
    assert retried[0].state is TaskState.PENDING
    if isinstance(api, ControlPlane):
        api.run(groups=["g"])
    wait_for(lambda: api.group_status("g").state == "SUCCEEDED", 60, 0.1, "the retried group")
    with pytest.raises(NotFoundError, match="no failed or cancelled task"):
        api.retry_failed("g")

    rows = api.group_result("g")
    assert isinstance(rows, pa.Table) and rows.num_rows == 6
    assert sorted(rows.column("size").to_pylist()) == [1, 2, 3, 4, 5, 6]
    logs, end = api.task_logs(retried[0].id)
    assert "partition 1 fails" in logs and end > 0
    assert [e["to"] for e in api.task_events(retried[0].id)][-1] == "SUCCEEDED"


def test_a_group_whose_runner_died_is_resumed(
    connect: Callable[[], ControlAPI], plane: ControlPlane, home: Path
) -> None:
    """A runner killed mid-task leaves the task RUNNING; starting the group again resumes
    it, and the next scheduler retries the task once its heartbeat is stale."""
    script = home / "rows.py"
    script.write_text(FLAKY.replace("context.partition == 1", "False"))
    plane.create_cluster(ClusterSpec(name="c"))
    plane.create_group(
        GroupSpec(
            name="g",
            cluster="c",
            source=str(write_files(home / "data", 4)),
            script=str(script),
            partitions=2,
            env={"FLAG": "unused"},
        )
    )
    # What a runner that died leaves: one task RUNNING, its heartbeat stopped.
    first, _ = plane.store.start_group("g", plan(str(home / "data"), 2), home / "logs")
    plane.store.transition(first.id, TaskState.RUNNING)
    api = connect()
    resumed = api.start_group("g")
    assert sorted(t.partition for t in resumed) == [0, 1]
    if isinstance(api, ControlPlane):
        api.run(groups=["g"])
    wait_for(lambda: api.group_status("g").state == "SUCCEEDED", 60, 0.1, "the resumed group")
    reasons = [e["reason"] or "" for e in api.task_events(first.id)]
    assert any("heartbeat lost" in r for r in reasons), reasons
    assert api.group_result("g").num_rows == 4


def test_deployments_come_back_as_the_same_snapshots(api: ControlAPI, home_model: Path) -> None:
    from despina.control.models import DeploymentSpec

    made = api.create_deployment(DeploymentSpec(name="digits", model=str(home_model)))
    assert isinstance(made, Deployment) and made.name == "digits"
    listed = api.list_deployments()
    assert [type(d) for d in listed] == [Deployment] and listed[0].name == "digits"
    assert api.get_deployment("digits").task_id == made.task_id
    api.delete_deployment("digits")
    with pytest.raises(NotFoundError, match="no deployment named 'digits'"):
        api.get_deployment("digits")


def test_scripts_models_and_sources_are_confined(
    api: ControlAPI, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A group's script, a predict job's model folder and every spelling of a local source
    must lie inside the allowed roots, whichever way the group is created."""
    outside = tmp_path_factory.mktemp("outside")
    (outside / "steal.py").write_text("def main(context):\n    return 1\n")
    api.create_cluster(ClusterSpec(name="c"))
    data = str(write_files(home / "data", 2))
    refused = [
        GroupSpec(name="g", cluster="c", source=data, script=str(outside / "steal.py")),
        GroupSpec(
            name="g", cluster="c", source=data, job="predict", config={"model": str(outside)}
        ),
        GroupSpec(name="g", cluster="c", source=f"dir::file://{outside}", job="preprocess"),
        GroupSpec(name="g", cluster="c", source=f"local://{outside}", job="preprocess"),
    ]
    for spec in refused:
        with pytest.raises(PathEscapeError):
            api.create_group(spec)
    assert api.list_groups() == []

"""One executor contract, run against the local process pool and a real local Ray."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from despina.control.models import ClusterSpec, GroupSpec, Resources
from despina.control.plane import ControlPlane
from despina.control.scheduler import Scheduler
from despina.control.states import TaskState
from tests.control.fixtures import wait_for, write_files


@pytest.fixture(params=["local", "ray"])
def cluster(request: pytest.FixtureRequest, plane: ControlPlane) -> str:
    if request.param == "ray":
        request.getfixturevalue("ray_session")
        plane.create_cluster(ClusterSpec(name="c", backend="ray", address="auto", workers=2))
    else:
        plane.create_cluster(ClusterSpec(name="c", backend="local", workers=2))
    return "c"


def _script_group(plane: ControlPlane, home: Path, script: Path, n: int, **kw: object) -> str:
    source = write_files(home / "data", n)
    spec = {
        "name": "g",
        "cluster": "c",
        "source": str(source),
        "script": str(script),
        "partitions": 4,
        "resources": Resources(cpus=0.5),
        **kw,
    }
    plane.create_group(GroupSpec(**spec))  # type: ignore[arg-type]
    return "g"


def _run_in_thread(plane: ControlPlane) -> tuple[Scheduler, threading.Thread]:
    sched = Scheduler(plane.store, plane.settings)
    thread = threading.Thread(target=sched.run, kwargs={"until_done": True}, daemon=True)
    thread.start()
    return sched, thread


def test_every_row_once_in_partition_order(
    plane: ControlPlane, home: Path, cluster: str, rows_script: Path
) -> None:
    _script_group(plane, home, rows_script, 25)
    tasks = plane.start_group("g", wait=True)
    assert [t.state for t in tasks] == [TaskState.SUCCEEDED] * 4
    table = plane.group_result("g")
    names = table.column("name").to_pylist()
    assert names == sorted(names) and len(names) == 25 == len(set(names))
    assert table.column("size").to_pylist() == list(range(1, 26))
    assert sum(t.metrics["rows"] for t in tasks) == 25
    assert all(t.done == t.total for t in tasks)
    status = plane.group_status("g")
    assert status.state == "SUCCEEDED" and status.done == 25
    assert "wrote" in plane.task_logs(tasks[0].id)[0]


def test_a_raising_script_fails_after_its_retries_with_the_traceback_logged(
    plane: ControlPlane, home: Path, cluster: str
) -> None:
    script = home / "bad.py"
    script.write_text("def process(batch, context):\n    raise ValueError('no good row here')\n")
    _script_group(plane, home, script, 4, max_retries=1)
    tasks = plane.start_group("g", wait=True)
    assert {t.state for t in tasks} == {TaskState.FAILED}
    assert {t.attempt for t in tasks} == {2}
    assert "ValueError: no good row here" in (tasks[0].exit_reason or "")
    log = plane.task_logs(tasks[0].id)[0]
    assert "Traceback" in log and "attempt 2" in log
    assert plane.group_status("g").state == "FAILED"


def test_main_scripts_and_group_environment(plane: ControlPlane, home: Path, cluster: str) -> None:
    script = home / "main.py"
    script.write_text(
        "import os\n"
        "def main(context):\n"
        "    context.metrics['greeting'] = os.environ['GREETING']\n"
        "    return 42\n"
    )
    _script_group(plane, home, script, 2, partitions=1, env={"GREETING": "hello"})
    (task,) = plane.start_group("g", wait=True)
    assert task.state is TaskState.SUCCEEDED
    assert task.metrics["greeting"] == "hello" and task.metrics["result"] == 42


def test_cancel_stops_a_running_task(
    plane: ControlPlane, home: Path, cluster: str, rows_script: Path
) -> None:
    _script_group(plane, home, rows_script, 40, partitions=1, env={"DELAY": "0.5"})
    (task,) = plane.start_group("g")
    _, thread = _run_in_thread(plane)
    wait_for(lambda: plane.get_task(task.id).done >= 1, 60)
    plane.cancel_task(task.id)
    thread.join(30)
    assert not thread.is_alive()
    final = plane.get_task(task.id)
    assert final.state is TaskState.CANCELLED and final.done < 40
    assert final.exit_reason == "cancelled by user"


def test_a_task_past_its_timeout_is_killed_and_failed(
    plane: ControlPlane, home: Path, cluster: str, rows_script: Path
) -> None:
    _script_group(plane, home, rows_script, 40, partitions=1, env={"DELAY": "0.5"}, timeout_s=3.0)
    (task,) = plane.start_group("g", wait=True)
    assert task.state is TaskState.FAILED
    assert task.exit_reason == "timed out after 3s and was killed"
    assert task.done < 40

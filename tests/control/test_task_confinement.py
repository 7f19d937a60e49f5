"""A script's processes end with its task: stuck in a C call past its timeout, forked
twice behind a finished task, or over its memory limit, and the worker goes on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from despina.control.models import ClusterSpec, GroupSpec, Resources
from despina.control.plane import ControlPlane
from despina.control.states import TaskState
from tests.control.fixtures import write_files
from tests.waiting import wait_for

STUCK = """
import ctypes, os

def main(context):
    with open(os.path.join(context.output, "pids"), "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    ctypes.PyDLL(None).sleep(600)  # one C call that holds the interpreter lock
"""

ORPHAN = """
import os, time

def main(context):
    if os.fork() == 0:  # a double fork: the grandchild is nobody's child
        if os.fork() == 0:
            with open(os.path.join(context.output, "pids"), "a") as fh:
                fh.write(f"{os.getpid()}\\n")
            time.sleep(600)
        os._exit(0)
    os.wait()
    return "done"
"""

GREEDY = """
def main(context):
    hog = bytearray(2 * 2**30)  # 2 GiB
    return len(hog)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead but not yet reaped
        return fh.read().split(")")[-1].split()[0] != "Z"


def _group(plane: ControlPlane, home: Path, name: str, script: str, **kw: Any) -> None:
    path = home / f"{name}.py"
    path.write_text(script)
    plane.create_group(
        GroupSpec(
            name=name,
            cluster="c",
            source=str(write_files(home / f"d-{name}", 1)),
            script=str(path),
            max_retries=0,
            **kw,
        )
    )


def _pids(home: Path, group: str) -> list[int]:
    return [int(p) for p in (home / "outputs" / group / "pids").read_text().split()]


@pytest.fixture
def cluster(plane: ControlPlane) -> ControlPlane:
    plane.create_cluster(ClusterSpec(name="c", workers=1))
    return plane


def test_a_script_stuck_in_a_c_call_dies_with_its_timeout(
    cluster: ControlPlane, home: Path
) -> None:
    # Long enough for the task's interpreter to reach main() on a loaded machine: the
    # timeout counts from the task's start, its imports included.
    _group(cluster, home, "stuck", STUCK, timeout_s=10)
    (task,) = cluster.start_group("stuck", wait=True)
    assert task.state is TaskState.FAILED and "timed out" in (task.exit_reason or "")
    [pid] = _pids(home, "stuck")
    wait_for(lambda: not _alive(pid), 10, 0.1, f"the stuck script (pid {pid}) ending")


def test_a_grandchild_does_not_outlive_its_finished_task(cluster: ControlPlane, home: Path) -> None:
    _group(cluster, home, "orphan", ORPHAN)
    (task,) = cluster.start_group("orphan", wait=True)
    assert task.state is TaskState.SUCCEEDED, task.exit_reason
    pids = home / "outputs" / "orphan" / "pids"
    wait_for(pids.is_file, 10, 0.05, "the grandchild's pid")
    [pid] = _pids(home, "orphan")
    wait_for(lambda: not _alive(pid), 10, 0.1, f"the grandchild (pid {pid}) ending")


def test_a_script_over_its_memory_limit_fails_clearly_and_the_worker_goes_on(
    cluster: ControlPlane, home: Path
) -> None:
    _group(cluster, home, "greedy", GREEDY, resources=Resources(memory_gb=0.5))
    (task,) = cluster.start_group("greedy", wait=True)
    assert task.state is TaskState.FAILED
    assert "memory limit (0.5 GiB; raise --memory-gb)" in (task.exit_reason or ""), task.exit_reason
    _group(cluster, home, "after", "def main(context):\n    return 1\n")
    (after,) = cluster.start_group("after", wait=True)
    assert after.state is TaskState.SUCCEEDED, after.exit_reason

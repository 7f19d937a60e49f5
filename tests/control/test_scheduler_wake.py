"""A scheduler wired to its plane starts queued work at once, not at its next poll."""

from __future__ import annotations

import threading
from pathlib import Path

from despina.control.models import ClusterSpec, GroupSpec
from despina.control.plane import ControlPlane
from despina.control.scheduler import Scheduler
from tests.control.fixtures import make_settings, wait_for, write_files


def test_starting_a_group_wakes_an_idle_scheduler(tmp_path: Path, rows_script: Path) -> None:
    # A poll far longer than the wait below: only the wake-up can start the task in time.
    plane = ControlPlane(make_settings(tmp_path, poll_s=600.0))
    sched = Scheduler(plane.store, plane.settings)
    plane.on_change(sched.wake)
    thread = threading.Thread(target=sched.run, daemon=True)
    thread.start()
    try:
        plane.create_cluster(ClusterSpec(name="c", workers=1))
        source = write_files(tmp_path / "data", 3)
        plane.create_group(
            GroupSpec(name="g", cluster="c", source=str(source), script=str(rows_script))
        )
        plane.start_group("g")
        wait_for(lambda: plane.group_status("g").state == "SUCCEEDED", 120)
        assert plane.group_result("g").num_rows == 3
    finally:
        sched.stop_event.set()
        sched.wake()
        thread.join(60)
        plane.close()
    assert not thread.is_alive()

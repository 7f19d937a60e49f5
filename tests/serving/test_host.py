"""Deployments as long-running control-plane tasks: a server claims, serves, stops, hands
back and takes over a deployment's task; the scheduler leaves them to the servers."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from despina.control.models import DeploymentSpec
from despina.control.plane import ControlPlane
from despina.control.scheduler import Scheduler
from despina.control.states import TaskState
from despina.control.store.common import utcnow
from despina.control.store.tables import TaskRow
from despina.core.errors import ConflictError
from despina.serving.host import DeploymentHost
from despina.serving.settings import ServingSettings

SETTINGS = ServingSettings(threads=1)


def _host(plane: ControlPlane) -> DeploymentHost:
    return DeploymentHost(SETTINGS, plane)


def test_a_server_claims_serves_stops_and_serves_again(
    plane: ControlPlane, home_model: Path
) -> None:
    dep = plane.create_deployment(DeploymentSpec(name="digits", model=str(home_model)))
    assert dep.state == "pending"
    host = _host(plane)
    try:
        host.sync()
        assert "digits" in host.loaded
        task = plane.get_task(dep.task_id or 0)
        assert task.state is TaskState.RUNNING and task.group == "digits"
        assert plane.get_deployment("digits").state == "running"
        assert "serving" in plane.task_logs(task.id)[0]
        # A second server on the same store leaves it alone (the heartbeat is fresh).
        other = _host(plane)
        other.sync()
        assert other.loaded == {} and plane.get_task(task.id).attempt == 1

        plane.cancel_task(task.id)  # despina task cancel: the server stops serving
        host.sync()
        assert "digits" not in host.loaded
        stopped = plane.get_deployment("digits")
        assert (stopped.state, stopped.reason) == ("stopped", "stopped by user")
        assert "stopped by user" in plane.task_logs(task.id)[0]

        plane.retry_task(task.id)  # despina task retry: served again, a new attempt
        host.sync()
        assert "digits" in host.loaded
        assert plane.get_task(task.id).attempt == 2
    finally:
        host.close()
    # A server that stops hands the deployment back for the next one.
    handed = plane.get_task(task.id)
    assert handed.state is TaskState.RETRYING and "server hosting it stopped" in (
        handed.exit_reason or ""
    )
    assert plane.get_deployment("digits").state == "pending"
    nxt = _host(plane)
    try:
        nxt.sync()
        assert "digits" in nxt.loaded and plane.get_task(task.id).state is TaskState.RUNNING
    finally:
        nxt.close()


def test_a_dead_servers_deployment_is_taken_over(plane: ControlPlane, home_model: Path) -> None:
    dep = plane.create_deployment(DeploymentSpec(name="digits", model=str(home_model)))
    task_id = dep.task_id or 0
    dead = _host(plane)
    dead.sync()
    assert plane.get_task(task_id).state is TaskState.RUNNING
    # It dies without closing: its heartbeat stops (here: is made old).
    old = utcnow() - timedelta(seconds=plane.settings.stale_after_s + 5)
    with plane.store.engine.begin() as conn:
        conn.execute(update(TaskRow).where(TaskRow.id == task_id).values(heartbeat_at=old))
    # The scheduler does not touch it (a deployment is not an executor's task) ...
    sched = Scheduler(plane.store, plane.settings)
    sched._last_heartbeat = -1e9
    sched.step(wait_s=0.01)
    assert plane.get_task(task_id).state is TaskState.RUNNING
    assert not sched.unfinished()  # and a deployment does not keep a runner alive
    # ... the next server takes it over.
    host = _host(plane)
    try:
        host.sync()
        assert "digits" in host.loaded
        events = [(e["from"], e["to"]) for e in plane.task_events(task_id)]
        assert ("RUNNING", "RETRYING") in events and events[-1] == ("PENDING", "RUNNING")
        # The dead server's next sync (were it alive) sees it moved on and lets go.
        dead.sync()
        assert dead.loaded == {}
    finally:
        host.close()
        sched.close()


def test_a_folder_that_broke_fails_its_task_with_the_reason(
    plane: ControlPlane, home_model: Path
) -> None:
    dep = plane.create_deployment(DeploymentSpec(name="digits", model=str(home_model)))
    shutil.rmtree(home_model)
    host = _host(plane)
    try:
        host.sync()
        failed = plane.get_deployment("digits")
        assert failed.state == "failed" and failed.reason
        task = plane.get_task(dep.task_id or 0)
        assert task.state is TaskState.FAILED
        assert "failed to load" in plane.task_logs(task.id)[0]
        with pytest.raises(ConflictError, match="is a deployment"):
            plane.start_group("digits")
        plane.delete_deployment("digits")
        host.sync()
        assert host.failed == {} and plane.list_groups() == []
    finally:
        host.close()


def test_through_the_api_cancel_stops_serving_and_retry_resumes(
    plane: ControlPlane, home_model: Path
) -> None:
    from despina.data.sources import digits_arrays
    from tests.control.fixtures import ThreadServer, wait_for
    from tests.serving.fixtures import png

    images, labels = digits_arrays()
    upload = {"file": ("a.png", png(images[0]))}
    server = ThreadServer(plane)
    try:
        with server.http() as client:
            r = client.post("/v1/deployments", json={"name": "digits", "model": str(home_model)})
            assert r.status_code == 201, r.text
            task_id = r.json()["task_id"]
            r = client.post("/v1/deployments/digits/predict", files=upload)
            assert r.status_code == 200 and r.json()["objects"][0]["label"] == str(labels[0])

            assert client.post(f"/v1/tasks/{task_id}/cancel").status_code == 200
            wait_for(
                lambda: (
                    client.post("/v1/deployments/digits/predict", files=upload).status_code == 404
                ),
                20,
            )
            assert plane.get_deployment("digits").state == "stopped"
            assert client.get("/ready").status_code == 200  # a stopped one is not awaited

            assert client.post(f"/v1/tasks/{task_id}/retry").status_code == 200
            wait_for(
                lambda: (
                    client.post("/v1/deployments/digits/predict", files=upload).status_code == 200
                ),
                20,
            )
            assert client.get(f"/v1/tasks/{task_id}").json()["task"]["attempt"] == 2
    finally:
        server.stop()
    # The server stopped: the deployment waits for the next one.
    assert plane.get_deployment("digits").state == "pending"


def test_a_deployment_not_loaded_yet_is_503_and_an_unknown_one_404(
    plane: ControlPlane, home_model: Path
) -> None:
    """Lookups run on the event loop and never load a model themselves."""
    from despina.core.errors import NotFoundError, OverloadedError

    dep = plane.create_deployment(DeploymentSpec(name="digits", model=str(home_model)))
    host = _host(plane)
    try:
        with pytest.raises(OverloadedError, match="not loaded yet") as err:
            host.get("digits")
        assert err.value.retry_after > 0 and host.wake.is_set()  # the sync loop runs now
        assert host.loaded == {}
        with pytest.raises(NotFoundError, match="no deployment named 'nope'"):
            host.get("nope")
        host.sync()
        assert host.get("digits").name == "digits"
        other = _host(plane)  # a second server on the same store does not serve it
        with pytest.raises(OverloadedError, match="another Despina server"):
            other.get("digits")
        plane.cancel_task(dep.task_id or 0)
        host.sync()
        with pytest.raises(NotFoundError, match=r"stopped.*task retry"):
            host.get("digits")
    finally:
        host.close()

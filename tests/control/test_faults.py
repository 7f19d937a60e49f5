"""Faults: a worker killed mid-task, a server killed mid-run, states that must not move."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from despina.control.executors.local import LocalExecutor
from despina.control.models import ClusterSpec, GroupSpec
from despina.control.plane import ControlPlane
from despina.control.scheduler import Scheduler
from despina.control.states import TaskState
from tests.control.fixtures import make_settings, wait_for, write_files


def test_sigkill_of_a_worker_is_retried_and_the_output_is_exact(
    plane: ControlPlane, home: Path, rows_script: Path
) -> None:
    plane.create_cluster(ClusterSpec(name="c", workers=2))
    source = write_files(home / "data", 24)
    plane.create_group(
        GroupSpec(
            name="g",
            cluster="c",
            source=str(source),
            script=str(rows_script),
            partitions=2,
            env={"DELAY": "0.15"},
        )
    )
    tasks = plane.start_group("g")
    sched = Scheduler(plane.store, plane.settings)
    thread = threading.Thread(target=sched.run, kwargs={"until_done": True}, daemon=True)
    thread.start()
    victim = tasks[0].id
    wait_for(lambda: plane.get_task(victim).done >= 2, 60)
    executor = sched.executors["c"]
    assert isinstance(executor, LocalExecutor)
    os.kill(executor.worker_pids()[victim], signal.SIGKILL)
    thread.join(90)
    assert not thread.is_alive()
    killed = plane.get_task(victim)
    assert killed.state is TaskState.SUCCEEDED and killed.attempt == 2
    events = plane.task_events(victim)
    assert any("worker process died" in (e["reason"] or "") for e in events)
    other = plane.get_task(tasks[1].id)
    assert other.state is TaskState.SUCCEEDED and other.attempt == 1
    names = plane.group_result("g").column("name").to_pylist()
    assert sorted(names) == [f"item-{i:04d}.txt" for i in range(24)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    token = "dsp_" + "f" * 43  # bootstrapped from DESPINA_ADMIN_TOKEN on the first start

    def __init__(self, home: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DESPINA_HOME": str(home),
            "DESPINA_ALLOWED_ROOTS": str(home),
            "DESPINA_STALE_AFTER": "2",
            "DESPINA_HEARTBEAT": "0.3",
            "DESPINA_RETRY_BACKOFF": "0.1",
            "DESPINA_ADMIN_TOKEN": self.token,
        }
        env.pop("DESPINA_DATABASE_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "despina.cli.app", "server", "start", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda: httpx.get(f"{self.url}/health", timeout=1).status_code == 200,
                60,
                0.2,
                "the server answering /health",
                alive=lambda: self.proc.poll() is None,
            )
        except AssertionError:
            self.proc.kill()
            raise

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def server_factory(home: Path) -> Iterator[type[_Server]]:
    started: list[_Server] = []

    class Factory(_Server):
        def __init__(self, port: int) -> None:
            super().__init__(home, port)
            started.append(self)

    yield Factory  # type: ignore[misc]
    for s in started:
        if s.proc.poll() is None:
            s.proc.terminate()
            s.proc.wait(20)


def test_a_killed_server_restarts_and_retries_what_it_left_running(
    home: Path, rows_script: Path, server_factory: type[_Server]
) -> None:
    port = _free_port()
    server = server_factory(port)  # type: ignore[call-arg]
    source = write_files(home / "data", 30)
    auth = {"Authorization": f"Bearer {server.token}"}
    http = httpx.Client(base_url=server.url, timeout=10, headers=auth)
    assert http.post("/v1/clusters", json={"name": "c", "workers": 1}).status_code == 201
    body = {
        "name": "g",
        "cluster": "c",
        "source": str(source),
        "script": str(rows_script),
        "partitions": 1,
        "env": {"DELAY": "0.1"},
    }
    assert http.post("/v1/groups", json=body).status_code == 201
    (task,) = http.post("/v1/groups/g/start").json()

    def done() -> int:
        return int(http.get(f"/v1/tasks/{task['id']}").json()["task"]["done"])

    wait_for(lambda: done() >= 3, 60)
    server.kill()
    http.close()
    # Its worker notices and exits; the task is left RUNNING in the store.
    url = server_factory(port).url  # type: ignore[call-arg]
    http = httpx.Client(base_url=url, timeout=10, headers=auth)

    def state() -> str:
        return str(http.get(f"/v1/tasks/{task['id']}").json()["task"]["state"])

    wait_for(lambda: state() == "SUCCEEDED", 90, every=0.3)
    shown = http.get(f"/v1/tasks/{task['id']}").json()
    http.close()
    assert shown["task"]["attempt"] == 2
    assert any("heartbeat lost" in (e["reason"] or "") for e in shown["events"])
    plane = ControlPlane(make_settings(home))
    names = plane.group_result("g").column("name").to_pylist()
    plane.close()
    assert names == [f"item-{i:04d}.txt" for i in range(30)]


@pytest.mark.slow
def test_a_server_killed_in_the_audit_stage_resumes_without_redoing_the_others(
    home: Path, server_factory: type[_Server]
) -> None:
    """The server dies while a staged audit's last task (the checks, the report) runs:
    restarted, it runs that task again and nothing else; the report is whole."""
    import io

    import pandas as pd

    from tests.conftest import write_digits

    port = _free_port()
    server = server_factory(port)  # type: ignore[call-arg]
    data = write_digits(home / "digits", per_class=12)
    auth = {"Authorization": f"Bearer {server.token}"}
    http = httpx.Client(base_url=server.url, timeout=10, headers=auth)
    assert http.post("/v1/clusters", json={"name": "c", "workers": 2}).status_code == 201
    config = {"folds": 2, "label_rounds": 1, "seed": 0, "model": {"width": 8},
              "train": {"epochs": 10, "patience": 10}}  # fmt: skip
    body = {"name": "g", "cluster": "c", "source": str(data), "job": "audit",
            "config": config, "partitions": 2, "timeout_s": 300}  # fmt: skip
    assert http.post("/v1/groups", json=body).status_code == 201, body
    tasks = sorted(http.post("/v1/groups/g/start").json(), key=lambda t: t["partition"])
    assert [t["stage"] for t in tasks] == [0, 0, 1, 1, 2]
    last = tasks[-1]["id"]

    def state(client: httpx.Client) -> str:
        return str(client.get(f"/v1/tasks/{last}").json()["task"]["state"])

    wait_for(lambda: state(http) == "RUNNING", 120, every=0.05)
    server.kill()
    http.close()
    http = httpx.Client(base_url=server_factory(port).url, timeout=10, headers=auth)  # type: ignore[call-arg]
    wait_for(lambda: state(http) == "SUCCEEDED", 120, every=0.3)
    shown = [http.get(f"/v1/tasks/{t['id']}").json()["task"] for t in tasks]
    http.close()
    assert [t["attempt"] for t in shown] == [1, 1, 1, 1, 2]
    plane = ControlPlane(make_settings(home))
    try:
        text = plane.read_output(Path(shown[-1]["outputs"][0]) / "samples.csv").decode()
    finally:
        plane.close()
    assert len(pd.read_csv(io.StringIO(text))) == 120


def test_a_forwarded_address_does_not_reset_the_failed_login_limit(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From loopback, each bad token with a new X-Forwarded-For used to count as a new
    client and was never limited; now forwarded headers are trusted only from proxies the
    operator names (DESPINA_TRUSTED_PROXIES)."""
    monkeypatch.setenv("DESPINA_AUTH_FAIL_LIMIT", "5")
    server = _Server(home, _free_port())
    try:
        codes = [
            httpx.get(
                f"{server.url}/v1/clusters",
                headers={
                    "Authorization": "Bearer dsp_" + "x" * 43,
                    "X-Forwarded-For": f"10.0.0.{i}",
                },
                timeout=10,
            ).status_code
            for i in range(12)
        ]
        assert codes[:5] == [401] * 5 and set(codes[6:]) == {429}, codes
    finally:
        server.kill()
